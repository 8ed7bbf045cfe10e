"""The knowledge bench's material: a generated help centre for a fictional shipping SaaS (Parcelwise),
served as a website on 127.0.0.1, the same pages as Markdown, bulk articles for large text sources,
and the questions asked of it. Deterministic: the same run writes the same bytes.

The pages are templated (real help centres are too: many siblings differing by a name and a few
facts), 400–800 words each, with the chrome a crawler must strip: navigation, breadcrumbs, related
links, a footer and a cookie banner.
"""

from __future__ import annotations

import html
import random
import re
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMPANY = "Parcelwise"
PAGE_WORDS = (400, 800)

# (category, title, action, object, objects, menu)
TOPICS: list[tuple[str, str, str, str, str, str]] = [
    ("Getting started", "Creating your Parcelwise account", "create a Parcelwise account", "account", "accounts", "parcelwise.example/signup"),
    ("Getting started", "Setting up your first warehouse", "set up a warehouse", "warehouse", "warehouses", "Settings → Warehouses"),
    ("Getting started", "Importing products from a spreadsheet", "import products from a spreadsheet", "product", "products", "Products → Import"),
    ("Getting started", "Choosing your default package sizes", "choose default package sizes", "package preset", "package presets", "Settings → Packaging"),
    ("Getting started", "Inviting your team", "invite team members", "invitation", "invitations", "Settings → Team"),
    ("Account and security", "Resetting your password", "reset a forgotten password", "password", "passwords", "Sign in → Forgot password"),
    ("Account and security", "Turning on two-factor authentication", "turn on two-factor authentication", "authenticator app", "authenticator apps", "Profile → Security"),
    ("Account and security", "Signing in with single sign-on", "sign in with single sign-on", "identity provider", "identity providers", "Settings → Security → SSO"),
    ("Account and security", "Reviewing the audit log", "review the audit log", "audit event", "audit events", "Settings → Audit log"),
    ("Account and security", "Closing your account", "close a Parcelwise account", "closure request", "closure requests", "Settings → Account → Close account"),
    ("Billing and plans", "Comparing the Starter, Growth and Scale plans", "compare plans", "plan", "plans", "Settings → Billing → Plans"),
    ("Billing and plans", "Updating your payment card", "update the payment card", "payment card", "payment cards", "Settings → Billing → Payment method"),
    ("Billing and plans", "Downloading invoices", "download an invoice", "invoice", "invoices", "Settings → Billing → Invoices"),
    ("Billing and plans", "Adding a VAT number", "add a VAT number", "VAT number", "VAT numbers", "Settings → Billing → Tax details"),
    ("Billing and plans", "Understanding label credits", "buy label credits", "label credit", "label credits", "Settings → Billing → Credits"),
    ("Orders", "Syncing orders from your store", "sync orders from a store", "order", "orders", "Orders → Sync now"),
    ("Orders", "Splitting an order into several shipments", "split an order", "shipment", "shipments", "Orders → Split"),
    ("Orders", "Merging orders for the same customer", "merge orders", "merged order", "merged orders", "Orders → Merge"),
    ("Orders", "Putting an order on hold", "put an order on hold", "hold", "holds", "Orders → Actions → Hold"),
    ("Orders", "Editing a customer's shipping address", "edit a shipping address", "address", "addresses", "Orders → Customer → Address"),
    ("Shipping and labels", "Connecting a carrier account", "connect a carrier account", "carrier account", "carrier accounts", "Settings → Carriers"),
    ("Shipping and labels", "Printing shipping labels", "print shipping labels", "label", "labels", "Orders → Print labels"),
    ("Shipping and labels", "Setting up a thermal label printer", "set up a thermal printer", "printer", "printers", "Settings → Printing"),
    ("Shipping and labels", "Creating shipping rules", "create a shipping rule", "shipping rule", "shipping rules", "Settings → Automation → Rules"),
    ("Shipping and labels", "Shipping internationally with customs forms", "fill in customs forms", "customs form", "customs forms", "Orders → Customs"),
    ("Returns", "Creating a returns portal", "create a returns portal", "returns portal", "returns portals", "Returns → Portal"),
    ("Returns", "Approving a return request", "approve a return request", "return request", "return requests", "Returns → Requests"),
    ("Returns", "Sending prepaid return labels", "send a prepaid return label", "return label", "return labels", "Returns → Labels"),
    ("Returns", "Issuing refunds for returned items", "issue a refund", "refund", "refunds", "Returns → Refunds"),
    ("Returns", "Restocking returned products", "restock returned products", "restock", "restocks", "Returns → Restock"),
    ("Integrations", "Connecting Shopify", "connect a Shopify store", "Shopify store", "Shopify stores", "Settings → Integrations → Shopify"),
    ("Integrations", "Connecting WooCommerce", "connect a WooCommerce store", "WooCommerce store", "WooCommerce stores", "Settings → Integrations → WooCommerce"),
    ("Integrations", "Selling on Amazon and eBay", "connect a marketplace", "marketplace", "marketplaces", "Settings → Integrations → Marketplaces"),
    ("Integrations", "Sending tracking emails through Klaviyo", "send tracking emails through Klaviyo", "email flow", "email flows", "Settings → Integrations → Klaviyo"),
    ("Integrations", "Exporting to your accounting software", "export to accounting software", "accounting export", "accounting exports", "Settings → Integrations → Accounting"),
    ("Reports", "Reading the shipping cost report", "read the shipping cost report", "cost report", "cost reports", "Reports → Shipping costs"),
    ("Reports", "Tracking delivery times", "track delivery times", "delivery time", "delivery times", "Reports → Delivery"),
    ("Reports", "Scheduling report emails", "schedule a report email", "scheduled report", "scheduled reports", "Reports → Schedules"),
    ("Reports", "Exporting data to CSV", "export data to CSV", "export", "exports", "Reports → Export"),
    ("Reports", "Measuring packer productivity", "measure packer productivity", "packing session", "packing sessions", "Reports → Team"),
    ("Team and permissions", "Understanding roles and permissions", "assign roles", "role", "roles", "Settings → Team → Roles"),
    ("Team and permissions", "Creating custom roles", "create a custom role", "custom role", "custom roles", "Settings → Team → Custom roles"),
    ("Team and permissions", "Limiting access to a warehouse", "limit access to a warehouse", "warehouse permission", "warehouse permissions", "Settings → Team → Access"),
    ("Team and permissions", "Transferring account ownership", "transfer ownership", "ownership transfer", "ownership transfers", "Settings → Team → Owner"),
    ("Team and permissions", "Removing a team member", "remove a team member", "team member", "team members", "Settings → Team"),
    ("API and webhooks", "Creating an API key", "create an API key", "API key", "API keys", "Settings → Developers → API keys"),
    ("API and webhooks", "Subscribing to webhooks", "subscribe to webhooks", "webhook", "webhooks", "Settings → Developers → Webhooks"),
    ("API and webhooks", "Understanding API rate limits", "stay within the API rate limits", "API request", "API requests", "Settings → Developers → Usage"),
    ("API and webhooks", "Creating shipments through the API", "create shipments through the API", "API shipment", "API shipments", "POST /v2/shipments"),
    ("API and webhooks", "Testing in the sandbox", "test in the sandbox", "sandbox order", "sandbox orders", "Settings → Developers → Sandbox"),
]

PLANS = ("Starter", "Growth", "Scale")
ROLES = ("Owner", "Admin", "Manager", "Packer", "Viewer")
CARRIERS = ("UPS", "DHL Express", "FedEx", "USPS", "Royal Mail", "PostNL", "Canada Post", "DPD", "Australia Post", "GLS")
PLATFORMS = ("Shopify", "WooCommerce", "BigCommerce", "Amazon", "eBay", "Etsy", "Magento", "Squarespace")
FORMATS = ("CSV", "XLSX", "PDF", "ZPL")
COUNTRIES = ("Germany", "France", "the United Kingdom", "Canada", "Australia", "the Netherlands", "Spain", "Japan", "Mexico", "Sweden")
PRINTERS = ("Zebra ZD421", "Rollo X1040", "DYMO 4XL", "Brother QL-1110", "Munbyn ITPP941")

INTRO = (
    "This article explains how to {action} in {company} and what to check when something does not work as expected.",
    "Most teams {action} during their first week, and it takes about {minutes} minutes once the details are at hand.",
    "You can {action} from the web app or from the {company} mobile app; the steps below use the web app.",
    "Only people with the {role} role or higher can {action}; other team members see the option greyed out.",
    "{Objects} are shared by everyone in the workspace, so a change made here applies to every connected store.",
    "If you run more than one store, repeat these steps for each of them: {objects} are kept per store.",
    "Changes take effect immediately for new orders; orders already in the queue keep their earlier settings.",
    "The same settings are available through the API, which is useful when you manage many stores at once.",
)
BEFORE = (
    "Make sure you are signed in as a {role} or an Owner.",
    "Have your {carrier} account number and API credentials ready.",
    "Check that your {platform} store is connected under Settings → Integrations.",
    "Confirm your plan includes {objects}: the {plan} plan includes up to {limit}.",
    "Use a desktop browser; a few of these options are not yet in the mobile app.",
    "Export a backup first if you are about to change more than {batch} records at once.",
    "Keep the {printer} drivers up to date if you print from this page.",
    "Decide who on your team should be notified; notifications go to {role}s by default.",
)
STEPS = (
    "Open **{menu}**.",
    "Click **{button}** in the top right corner.",
    "Choose the store from the list at the top of the page.",
    "Fill in the **{field}** field; it accepts up to {chars} characters.",
    "Select {format} when asked for a format.",
    "Pick the {carrier} service you use most often as the default.",
    "Review the summary and click **Save**.",
    "Wait for the green confirmation banner; it usually appears within {seconds} seconds.",
    "Refresh the page to see the new {object} in the list.",
    "Optionally, switch on **Notify me by email** to hear when it finishes.",
)
LIMITS = (
    "On the Starter plan you can have up to {limit_starter} {objects}; Growth raises this to {limit_growth} and Scale removes the limit.",
    "{Company} keeps every change to {objects} in the audit log for {days} days, after which only the current version remains.",
    "Large accounts are processed in batches of {batch}; a batch usually finishes in under {minutes} minutes.",
    "There is no extra charge for {objects}: they are included in every plan, including the free trial.",
    "Each workspace can be connected to {stores} stores on Growth and {stores_scale} on Scale.",
    "The {plan} plan costs {price} dollars a month billed yearly, or {price_monthly} dollars billed monthly.",
    "Label credits bought for {carrier} never expire and can be used across all of your stores.",
    "Requests over the limit are answered with HTTP 429 and a Retry-After header of {seconds} seconds.",
)
PROBLEMS = (
    ("the {object} could not be saved", "Check that every required field is filled in, then click **Save** again. If it keeps failing, remove any emoji from the {field} field."),
    ("the request timed out", "This happens when {platform} is slow to answer. Wait {minutes} minutes and try again; nothing was changed in the meantime."),
    ("you do not have permission", "Ask an Owner or Admin to give your role the **Manage {objects}** permission under Settings → Team → Roles."),
    ("the {carrier} account rejected the credentials", "Reconnect the account from **Settings → Carriers** and paste the API key again, without spaces at the end."),
    ("the {platform} store did not respond", "Open the store's admin, check that the {company} app is still installed, then click **Reconnect** in {company}."),
    ("the file could not be read", "Save the file as UTF-8 {format} with one row per record and no merged cells, then upload it again."),
    ("the address could not be verified", "Check the postcode and the house number. For {country}, the street and number go on the same line."),
    ("the printer is offline", "Make sure the {printer} is switched on and set as the default printer, then print a test label from **Settings → Printing**."),
)
FAQ = (
    ("Can I undo this?", "Yes, within {days} days: open **{menu}**, find the {object} and click **Restore**. After that it is gone for good."),
    ("Does this work with {platform}?", "Yes. {platform} stores behave like any other store; orders appear within {seconds} seconds of being placed."),
    ("Is there an extra charge?", "No. {Objects} are included in every plan. Only label credits and the Scale plan's dedicated support are billed separately."),
    ("How long does it take?", "Usually under a minute. Accounts with more than {batch} orders a day may take up to {minutes} minutes the first time."),
    ("Can I do this from my phone?", "Partly: the {company} app for iOS and Android shows {objects}, but changing them needs the web app."),
    ("Who gets notified?", "Everyone with the {role} role, plus the Owner. You can change this under **Settings → Notifications**."),
    ("What happens to existing orders?", "Nothing: orders already imported keep their settings. Only orders synced after the change use the new ones."),
    ("Can I ship to {country}?", "Yes. {carrier} delivers to {country} in {days_delivery} working days on average; customs forms are filled in automatically."),
)
TIPS = (
    "For example, order #{order} placed in {city} at 16:55 is still shipped the same day when the {carrier} pickup is at 17:30.",
    "A common pattern is to {action} once for the main store and copy the result to the others with **Duplicate**.",
    "Teams shipping more than {batch} parcels a day usually give the {role} role to their shift leads only.",
    "If you use {platform} and {carrier} together, turn on **Sync tracking numbers** so customers see updates in both.",
    "The activity feed on the dashboard shows who changed {objects} and when, with a link to the order that triggered it.",
    "Keyboard shortcuts help on busy days: press N for a new {object}, P to print and / to search.",
    "Our {city} support team runs a live onboarding call every Tuesday; book a seat from the Help menu.",
    "Stores in {country} often add a second {carrier} service for heavy parcels over {weight} kg.",
    "Product SKU {sku} in the demo workspace shows every option on this page with sample data.",
    "When several people work on {objects} at once, the last one to click **Save** wins; earlier changes stay in the audit log.",
)
CITIES = ("Leeds", "Rotterdam", "Lyon", "Toronto", "Melbourne", "Austin", "Malmö", "Osaka", "Valencia", "Monterrey")
BUTTONS = ("New", "Add", "Connect", "Create", "Import", "Start", "Set up", "Export")
FIELDS = ("Name", "Reference", "Description", "Contact email", "Account number", "Note")


@dataclass
class Page:
    slug: str
    category: str
    title: str
    facts: dict[str, object]
    blocks: list[tuple[str, object]] = field(default_factory=list)  # ("h2"|"h3"|"p"|"ol"|"ul", text or items)

    def words(self) -> int:
        return sum(len(str(b if isinstance(b, str) else " ".join(b)).split()) for _, b in self.blocks)

    def markdown(self, *, flat: bool = False) -> str:
        """`flat`: the title is the only heading (the others lead their paragraph in bold), as in a
        pasted export; then chunks fill the budget instead of ending with each short section."""
        out = [f"# {self.title}", ""]
        for kind, body in self.blocks:
            if kind in ("h2", "h3") and flat:
                out += [f"**{body}**"]
            elif kind in ("h2", "h3"):
                out += [("## " if kind == "h2" else "### ") + str(body), ""]
            elif kind == "p":
                out += [str(body), ""]
            else:
                items = list(body)  # type: ignore[call-overload]
                out += [(f"{n}. " if kind == "ol" else "- ") + item for n, item in enumerate(items, start=1)] + [""]
        return "\n".join(out)


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _facts(rng: random.Random, topic: tuple[str, str, str, str, str, str]) -> dict[str, object]:
    category, title, action, obj, objs, menu = topic
    plan = rng.choice(PLANS)
    return {
        "company": COMPANY, "Company": COMPANY, "category": category, "title": title, "action": action,
        "object": obj, "objects": objs, "Objects": objs[:1].upper() + objs[1:], "menu": menu,
        "role": rng.choice(ROLES[1:4]), "carrier": rng.choice(CARRIERS), "platform": rng.choice(PLATFORMS),
        "format": rng.choice(FORMATS), "country": rng.choice(COUNTRIES), "printer": rng.choice(PRINTERS),
        "plan": plan, "button": rng.choice(BUTTONS), "field": rng.choice(FIELDS),
        "minutes": rng.choice((2, 3, 5, 10, 15, 20)), "seconds": rng.choice((5, 10, 15, 30, 60)),
        "days": rng.choice((7, 14, 30, 60, 90)), "days_delivery": rng.randint(2, 9),
        "batch": rng.choice((100, 250, 500, 1000, 5000)), "chars": rng.choice((64, 80, 120, 255)),
        "limit": rng.choice((3, 5, 10, 25, 50)), "limit_starter": rng.choice((1, 2, 3, 5)),
        "limit_growth": rng.choice((10, 20, 25, 50)), "stores": rng.choice((3, 5, 10)),
        "stores_scale": rng.choice((25, 50, 100)), "price": rng.choice((29, 49, 99, 199, 399)),
        "price_monthly": rng.choice((35, 59, 119, 239, 479)),
        "order": rng.randint(100_000, 999_999), "city": rng.choice(CITIES), "weight": rng.choice((20, 30, 31.5, 40)),
        "sku": f"{rng.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}{rng.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}-{rng.randint(1000, 99999)}",
        "code": f"PW-{rng.randint(1000, 9999)}", "code2": f"PW-{rng.randint(1000, 9999)}",
    }


def _fill(template: str, facts: dict[str, object]) -> str:
    return template.format(**facts)


def _paragraph(rng: random.Random, pool: tuple[str, ...], facts: dict[str, object], sentences: int) -> str:
    return " ".join(_fill(t, facts) for t in rng.sample(pool, min(sentences, len(pool))))


def build_page(topic: tuple[str, str, str, str, str, str], seed: int = 0) -> Page:
    """One help article of 400–800 words for a topic (same topic and seed: same page)."""
    rng = random.Random(zlib.crc32(f"{seed}:{topic[1]}".encode()))
    facts = _facts(rng, topic)
    page = Page(slug=slugify(topic[1]), category=topic[0], title=topic[1], facts=facts)
    action = str(facts["action"])
    b = page.blocks
    b.append(("p", _paragraph(rng, INTRO, facts, 4)))
    b.append(("h2", "Before you begin"))
    b.append(("p", f"A few things help this go smoothly when you {action}:"))
    b.append(("ul", [_fill(t, facts) for t in rng.sample(BEFORE, 4)]))
    b.append(("h2", f"How to {action}"))
    steps = [STEPS[0]] + rng.sample(STEPS[1:6], 3) + [STEPS[6]] + rng.sample(STEPS[7:], 2)
    b.append(("ol", [_fill(t, facts) for t in steps]))
    b.append(("p", _paragraph(rng, INTRO, facts, 2)))
    b.append(("h2", f"{str(facts['Objects'])} and your plan"))
    b.append(("p", _paragraph(rng, LIMITS, facts, 4)))
    b.append(("h2", "Troubleshooting"))
    for code, (symptom, fix) in zip((facts["code"], facts["code2"]), rng.sample(PROBLEMS, 2), strict=True):
        b.append(("p", f"**Error {code}: {_fill(symptom, facts)}.** {_fill(fix, facts)}"))
    b.append(("h2", "Tips"))
    b.append(("p", _paragraph(rng, TIPS, facts, 3)))
    b.append(("h2", "Frequently asked questions"))
    questions = rng.sample(FAQ, len(FAQ))
    low, high = PAGE_WORDS
    target = rng.randint(low + 20, high - 20)
    while questions and page.words() < target:
        question, answer = questions.pop()
        b.append(("h3", _fill(question, facts)))
        b.append(("p", _fill(answer, facts)))
    while page.words() < target:
        b.append(("p", _paragraph(rng, TIPS + LIMITS, facts, 4)))
    while page.words() > high:
        b.pop()
    return page


def pages() -> list[Page]:
    return [build_page(topic) for topic in TOPICS]


def bulk_text(seed: int, target_bytes: int) -> str:
    """Markdown articles (variants of the help topics per platform, carrier and country) up to
    `target_bytes` of UTF-8: the kind of export a customer pastes as one large text source."""
    rng = random.Random(seed)
    parts: list[str] = []
    size = 0
    n = 0
    while True:
        category, title, action, obj, objs, menu = TOPICS[n % len(TOPICS)]
        variant = rng.choice((f"for {rng.choice(PLATFORMS)} stores", f"with {rng.choice(CARRIERS)}",
                              f"when shipping to {rng.choice(COUNTRIES)}", f"on the {rng.choice(PLANS)} plan",
                              f"in release {rng.randint(3, 6)}.{rng.randint(0, 30)}"))
        page = build_page((category, f"{title} {variant}", f"{action} {variant}", obj, objs, menu), seed=seed * 100_003 + n)
        text = page.markdown(flat=True)
        encoded = len(text.encode()) + 1
        if size + encoded > target_bytes:
            break
        parts.append(text)
        size += encoded
        n += 1
    return "\n".join(parts)


def questions() -> list[str]:
    """What customers ask of the help centre: one how-to, one error and one plan question per page."""
    asked = []
    for page in pages():
        f = page.facts
        asked.append(f"How do I {f['action']}?")
        asked.append(f"What does error {f['code']} mean?")
        asked.append(f"Are {f['objects']} included in the {f['plan']} plan?")
    return asked


# --- HTML -------------------------------------------------------------------------------------------


def _inline(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text, quote=False))


def _chrome(title: str, body: str) -> str:
    categories = sorted({t[0] for t in TOPICS})
    nav = " ".join(f'<li><a href="/#{slugify(c)}">{html.escape(c)}</a></li>' for c in categories)
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)} | {COMPANY} Help Center</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="stylesheet" href="/static/help.css"><script src="/static/help.js" defer></script></head>\n'
        f'<body><header class="site"><a class="logo" href="/">{COMPANY} Help Center</a>'
        f'<form action="/search"><input name="q" placeholder="Search articles"></form>'
        f'<nav><ul>{nav}</ul></nav></header>\n{body}\n'
        f'<footer><p>© 2025 {COMPANY} Ltd. · <a href="/">All articles</a> · Privacy · Terms · Status</p>'
        "<p>Still stuck? Email support@parcelwise.example; we answer within one working day.</p></footer>"
        '<div class="cookie-banner">We use cookies to improve the help center. <button>Accept</button> '
        "<button>Decline</button></div></body></html>\n"
    )


def page_html(page: Page, related: list[Page]) -> str:
    parts = [f'<main><nav class="breadcrumbs"><a href="/">Help Center</a> › '
             f'<a href="/#{slugify(page.category)}">{html.escape(page.category)}</a></nav>',
             f"<article><h1>{html.escape(page.title)}</h1>"]
    for kind, body in page.blocks:
        if kind in ("h2", "h3", "p"):
            parts.append(f"<{kind}>{_inline(str(body))}</{kind}>")
        else:
            items = "".join(f"<li>{_inline(item)}</li>" for item in body)  # type: ignore[union-attr]
            parts.append(f"<{kind}>{items}</{kind}>")
    parts.append("<p class=\"helpful\">Was this article helpful? <button>Yes</button> <button>No</button></p></article>")
    links = "".join(f'<li><a href="/articles/{r.slug}">{html.escape(r.title)}</a></li>' for r in related)
    parts.append(f'<aside><h2>Related articles</h2><ul>{links}</ul></aside></main>')
    return _chrome(page.title, "\n".join(parts))


def index_html(all_pages: list[Page]) -> str:
    sections = []
    for category in dict.fromkeys(p.category for p in all_pages):
        links = "".join(f'<li><a href="/articles/{p.slug}">{html.escape(p.title)}</a></li>'
                        for p in all_pages if p.category == category)
        sections.append(f'<section id="{slugify(category)}"><h2>{html.escape(category)}</h2><ul>{links}</ul></section>')
    body = f"<main><h1>How can we help?</h1><p>Guides and answers for {COMPANY}.</p>{''.join(sections)}</main>"
    return _chrome("Help Center", body)


class HelpSite:
    """The help centre on 127.0.0.1 (a thread of this process): `/`, `/articles/<slug>`, robots.txt
    allowing all and naming sitemap.xml. Every GET is recorded with its time."""

    def __init__(self) -> None:
        self.pages = pages()
        self.hits: list[tuple[float, str]] = []
        self.delay = 0.0  # seconds before each page is answered: a remote site's latency
        self._lock = threading.Lock()
        files: dict[str, tuple[str, bytes]] = {"/": ("text/html; charset=utf-8", index_html(self.pages).encode())}
        for n, page in enumerate(self.pages):
            related = [self.pages[(n + k) % len(self.pages)] for k in (1, 2, 7)]
            files[f"/articles/{page.slug}"] = ("text/html; charset=utf-8", page_html(page, related).encode())
        self._files = files
        self._pages = frozenset(files)
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, a keep-alive client waits for
            # the delayed ACK (~40 ms a page), which would be charged to the crawler.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802
                with site._lock:
                    site.hits.append((time.perf_counter(), self.path))
                found = site._files.get(self.path)
                if site.delay and self.path in site._pages:
                    time.sleep(site.delay)
                if found is None:
                    self.send_error(404)
                    return
                kind, data = found
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._files["/robots.txt"] = ("text/plain", f"User-agent: *\nAllow: /\n\nSitemap: {self.url}/sitemap.xml\n".encode())
        urls = "".join(f"<url><loc>{self.url}/articles/{p.slug}</loc></url>" for p in self.pages)
        self._files["/sitemap.xml"] = ("application/xml", (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>\n').encode())
        self._thread = threading.Thread(target=self.server.serve_forever, name="help-site", daemon=True)
        self._thread.start()

    def page_hits(self, since: float = 0.0) -> list[tuple[float, str]]:
        """GETs of pages (the index and articles) from `since` (perf_counter), not robots.txt or the sitemap."""
        with self._lock:
            return [(t, p) for t, p in self.hits if t >= since and p in self._pages]

    def page_bodies(self) -> list[tuple[str, bytes]]:
        """(URL, HTML) of every page the crawler can read."""
        return [(self.url + path, data) for path, (_, data) in self._files.items() if path in self._pages]

    def page_bytes(self) -> int:
        return sum(len(data) for path, (_, data) in self._files.items() if path == "/" or path.startswith("/articles/"))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _print_sample() -> Iterator[str]:
    all_pages = pages()
    counts = [p.words() for p in all_pages]
    yield f"{len(all_pages)} pages, {min(counts)}–{max(counts)} words (mean {sum(counts) / len(counts):.0f})"
    yield all_pages[0].markdown()


if __name__ == "__main__":  # `python -m bench.help_site`: the word counts and the first page
    print("\n".join(_print_sample()))
