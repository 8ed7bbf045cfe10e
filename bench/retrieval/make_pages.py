"""Writes the templated help pages of the corpus (product, integration, tax, API, store, care pages)
from the hand-written facts below: `python -m bench.retrieval.make_pages`. Its output is committed
(corpus/*/gen-*.md), so the labelled questions point at pages a reader can open.

Real help centres have exactly this kind of page: many near-identical siblings that differ by a
name and a few facts. They are what makes retrieval hard for vectors (every sibling is as close)
and what the lexical side is for."""

from __future__ import annotations

import zlib
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"


def pick(key: str, *variants: str) -> str:
    """One of several phrasings, fixed per page so a rerun writes the same corpus."""
    return variants[zlib.crc32(key.encode()) % len(variants)]


def write(company: str, slug: str, title: str, sections: list[tuple[str, str]]) -> None:
    body = [f"# {title}", ""]
    for heading, text in sections:
        body += [f"## {heading}", text.strip(), ""]
    (CORPUS / company / f"gen-{slug}.md").write_text("\n".join(body))


# --- Lumora: bulbs, strips and accessories ------------------------------------------------------
# name, kind, fitting, lumens, watts, colours, hours, special, install
LUMORA_PRODUCTS = [
    ("A19 Colour", "bulb", "E26/E27 screw", 1100, 9, "16 million colours and whites from 2000 K to 6500 K", 25000,
     "It is our brightest general-purpose bulb and the one most people start with.",
     "Fits any standard table lamp or ceiling fitting with a screw base."),
    ("A19 White Ambiance", "bulb", "E26/E27 screw", 1000, 8, "warm to cool white from 2200 K to 6500 K, no colours", 25000,
     "It suits kitchens and offices where you want cool white by day and warm light at night.",
     "Use it in open or enclosed fittings rated for at least 8 W."),
    ("A19 Warm White", "bulb", "E26/E27 screw", 800, 7, "a fixed 2700 K warm white, dimmable", 20000,
     "It is the lowest-priced Lumora bulb and is sold in packs of four.",
     "Fits standard screw fittings; it only changes brightness, not colour."),
    ("GU10 Spot Colour", "spotlight", "GU10 twist-lock", 350, 5, "full colour and whites from 2200 K to 6500 K", 25000,
     "Its 40-degree beam is made for recessed ceiling spots and track lights.",
     "Push it into the socket and twist a quarter turn clockwise. Some recessed fittings are too shallow: the bulb is 58 mm long."),
    ("GU10 Spot White", "spotlight", "GU10 twist-lock", 350, 5, "whites from 2200 K to 6500 K", 25000,
     "It matches the GU10 Spot Colour in size so both can share a ceiling.",
     "Push and twist a quarter turn; check the fitting is not connected to a wall dimmer."),
    ("BR30 Flood", "flood bulb", "E26 screw", 950, 11, "full colour", 25000,
     "Its wide reflector spreads light evenly from recessed cans in high ceilings.",
     "Designed for 5- and 6-inch recessed cans; sold in North America only."),
    ("Candle E14", "candle bulb", "E14 small screw", 470, 5, "warm to cool white", 20000,
     "It fits chandeliers and wall sconces that take small candle-shaped bulbs.",
     "Screw into an E14 socket; in a chandelier, pair one bulb at a time to name each correctly."),
    ("Filament Edison", "decorative bulb", "E27 screw", 550, 7, "an amber-tinted 2100 K glow, dimmable", 15000,
     "Its visible filament and clear glass suit pendant lamps with open shades.",
     "The glass gets warm in use; let it cool before unscrewing."),
    ("Globe G95", "decorative bulb", "E27 screw", 800, 9, "full colour with an opal diffuser", 20000,
     "Its large round shape is meant to be seen, for bare pendant fittings.",
     "At 95 mm wide it does not fit most lamp shades with a narrow harp."),
    ("Lightstrip 2 m", "light strip", "plug-in power adapter", 1600, 20, "full colour along the whole strip", 25000,
     "It can be cut to length at the marked points every 33 cm and extended up to 10 m with extension pieces.",
     "Clean the surface with alcohol, peel the backing and press along the strip. Do not bend it sharply at the corners; use the corner connector."),
    ("Gradient Strip TV", "light strip", "plug-in power adapter", 1200, 18, "several colours at once along its length", 25000,
     "It mounts behind a television and can follow the colours on screen with the Lumora Sync Box.",
     "Sizes are for 55 to 65 inch and 75 to 85 inch screens; mount the clips along the back of the TV, with the start at the lower left."),
    ("Outdoor Spot", "outdoor spotlight", "low-voltage cable and base unit", 600, 8, "full colour", 25000,
     "It is rated IP65 and can be pushed into a lawn or fixed to a wall to light trees and paths.",
     "Connect up to three spots to one base unit; the base unit plugs into an outdoor mains socket."),
    ("Outdoor Path Light", "path light", "low-voltage cable and base unit", 320, 6, "full colour", 25000,
     "Each light is 40 cm tall with a ground spike for garden paths and borders.",
     "Chain up to five path lights on one base unit with the supplied cable."),
    ("Outdoor Wall Lantern", "wall light", "hard-wired", 800, 12, "warm to cool white", 25000,
     "It replaces an existing outdoor wall light and is rated IP54.",
     "It must be installed by a qualified electrician on a circuit without a dimmer."),
    ("Ceiling Panel", "ceiling light", "hard-wired", 3000, 30, "full colour and whites", 30000,
     "The round 40 cm panel replaces a ceiling light in rooms without lamps.",
     "Switch off the circuit breaker, connect the live and neutral wires to the terminal block, and hook the panel onto the mounting plate."),
    ("Dimmer Switch", "accessory", "battery-powered", 0, 0, "not a light", 0,
     "It has four buttons, on, brighter, dimmer and off, and runs for about three years on a CR2032 coin battery.",
     "Stick the wall plate over your existing switch or anywhere on a wall; the remote lifts off the plate magnetically."),
    ("Motion Sensor", "accessory", "battery-powered", 0, 0, "not a light", 0,
     "It switches lights when someone walks past and also measures daylight so lights stay off in bright rooms.",
     "Mount it at about 2 m height in a corner facing the entrance of the room; it runs two years on two AAA batteries."),
    ("Smart Plug", "accessory", "wall socket", 0, 0, "not a light", 0,
     "It turns any lamp or small appliance up to 2300 W into a device you can switch from the app.",
     "Plug it into a wall socket and plug the lamp into it; it cannot dim the device connected to it."),
]

# code, title, cause, fix
LUMORA_ERRORS = [
    ("L-101", "Bridge not found", "the app cannot see a Bridge on your network", "make sure your phone is on the same Wi-Fi as the router the Bridge is wired to, and that the Bridge ring is solid blue"),
    ("L-102", "Bridge already claimed", "the Bridge is registered to another Lumora account", "ask the previous owner to remove it from their account, or factory reset the Bridge"),
    ("L-103", "No internet on Bridge", "the Bridge has a network cable but cannot reach our servers", "restart your router, then check that your firewall does not block outgoing port 443"),
    ("L-104", "Bridge storage full", "the Bridge already holds 200 scenes", "delete scenes you no longer use under each room"),
    ("L-110", "Light limit reached", "the Bridge already controls 50 lights", "add a second Bridge to the home and pair the new light to it"),
    ("L-111", "Accessory limit reached", "the Bridge already has 12 switches and sensors", "remove an accessory you no longer use, or add a second Bridge"),
    ("L-120", "Light not responding", "a light did not answer a command within five seconds", "check the wall switch and the distance to the Bridge"),
    ("L-121", "Light on other Bridge", "the light is paired to a different Bridge", "add it by serial number, which moves it to this Bridge"),
    ("L-130", "Update download failed", "the firmware could not be downloaded", "check the Bridge's internet connection and retry later"),
    ("L-131", "Update interrupted", "a light lost power during a firmware update", "keep it powered, wait ten minutes, then reset and pair it again if it stays unresponsive"),
    ("L-132", "Update incompatible", "the firmware does not fit an older hardware revision", "no action is needed: the light keeps its current firmware and works normally"),
    ("L-140", "Bluetooth permission missing", "the app is not allowed to use Bluetooth", "allow Bluetooth for Lumora Home in your phone's settings"),
    ("L-141", "Location permission missing", "Android needs location access to scan for Bluetooth devices", "allow location for Lumora Home while using the app"),
    ("L-142", "Bluetooth range", "the bulb is too far from your phone for Bluetooth control", "stand within 10 m of the bulb or add a Bridge"),
    ("L-150", "Schedule conflict", "two schedules try to set the same light at the same minute", "change one of the times or merge them into one schedule"),
    ("L-151", "Location not set", "a sunrise or sunset schedule needs the home's location", "set the location under Settings, Home, Location"),
    ("L-160", "Voice service unlinked", "the voice assistant's access token expired", "open the assistant's app and link the Lumora skill again"),
    ("L-161", "Matter code expired", "a Matter pairing code is valid for 15 minutes", "create a new pairing code and enter it straight away"),
    ("L-162", "Matter fabric limit", "the Bridge is already shared with five smart home platforms", "remove one platform under Settings, Bridges, Matter"),
    ("L-170", "Account locked", "there were too many wrong sign-in attempts", "wait 30 minutes or reset your password"),
    ("L-171", "Verification code wrong", "the two-step code was mistyped or your phone's clock is wrong", "turn on automatic date and time on your phone and try a new code"),
    ("L-172", "Invitation expired", "home invitations are valid for seven days", "ask the home owner to send a new invitation"),
    ("L-180", "Sync Box no signal", "the Sync Box receives no HDMI picture", "check that the source device is on and connected to an input on the Sync Box"),
    ("L-181", "HDR passthrough unsupported", "the source sends a format the Sync Box cannot pass through", "set the source to HDR10 or lower the output to 4K at 60 Hz"),
    ("L-190", "Sensor battery low", "a motion sensor or switch battery is below 10 percent", "replace the battery; settings are kept"),
    ("L-191", "Sensor offline", "an accessory has not reported for 24 hours", "replace the battery and press any button to wake it"),
    ("L-199", "Unknown hardware fault", "a device reported an internal error", "note the serial number and contact support to start a warranty claim"),
]

# --- Tallyfox: integrations, taxes, API ----------------------------------------------------------
# name, category, what syncs, direction+frequency, plan, caveat
TALLYFOX_INTEGRATIONS = [
    ("Stripe", "payments", "card payments, payouts and provider fees", "payments flow into Tallyfox as they succeed", "every plan",
     "Payouts are matched to bank lines automatically, with the fees booked to Bank charges."),
    ("PayPal", "payments", "PayPal payments on invoices and PayPal balance transactions", "transactions are imported every hour", "every plan",
     "Payments from a PayPal account in another currency need the Growth plan for multi-currency."),
    ("GoCardless", "direct debit", "mandates and direct debit collections", "collections are created on each invoice's due date", "Growth and Scale",
     "A customer who cancels their mandate is marked on their contact and reminders start again."),
    ("Mollie", "payments", "iDEAL, Bancontact and card payments", "payments are recorded as they succeed", "every plan",
     "Mollie is popular in the Netherlands and Belgium; its settlements are matched like bank transfers."),
    ("Shopify", "e-commerce", "orders, refunds and Shopify Payments payouts", "a daily summary invoice per sales channel", "Growth and Scale",
     "Orders are summarised per day instead of one invoice per order, which keeps the ledger readable."),
    ("WooCommerce", "e-commerce", "orders, customers and refunds", "orders are imported every 15 minutes", "Growth and Scale",
     "Install the Tallyfox plugin in WordPress first and paste the connection key from Tallyfox into it."),
    ("Etsy", "marketplace", "sales, Etsy fees and deposits", "a weekly summary of sales and fees", "every plan",
     "Etsy collects and pays sales tax in many places, so those sales are recorded without tax."),
    ("Amazon Seller", "marketplace", "settlement reports with sales, fees and refunds", "imported when Amazon publishes each settlement, every two weeks", "Scale",
     "Each settlement becomes one journal so the deposit in your bank matches it exactly."),
    ("HubSpot", "CRM", "companies, contacts and won deals", "contacts sync both ways every hour", "Growth and Scale",
     "A won deal can create a draft invoice with the deal's line items."),
    ("Pipedrive", "CRM", "organisations and people", "contacts sync one way, from Pipedrive to Tallyfox", "Growth and Scale",
     "Invoice status is shown on the deal in Pipedrive so sales can see who has paid."),
    ("Google Drive", "storage", "PDF copies of invoices and receipts", "files are saved as they are created", "every plan",
     "Files go into a folder per year and month that Tallyfox creates in your Drive."),
    ("Dropbox", "storage", "receipts dropped into a watched folder", "the folder is checked every ten minutes", "every plan",
     "Each file put in the Tallyfox Receipts folder becomes a draft expense, then moves to a Processed folder."),
    ("Slack", "notifications", "messages when invoices are paid or overdue", "messages are sent as events happen", "every plan",
     "Choose the channel and which events post to it; nothing from Slack flows back into Tallyfox."),
    ("Zapier", "automation", "any of 40 triggers and actions such as new invoice or new contact", "depends on your Zap", "Growth and Scale",
     "Each Zap counts against your Zapier plan's tasks, not against anything in Tallyfox."),
    ("Harvest", "time tracking", "billable hours and expenses per project", "imported when you create an invoice from Harvest", "Growth and Scale",
     "Rates come from Harvest; change them there, not on the Tallyfox invoice, to keep both in line."),
    ("Toggl Track", "time tracking", "billable time entries", "pulled when you choose Add time to an invoice", "Growth and Scale",
     "Only entries marked billable are offered, grouped by project or by task."),
    ("Gusto", "payroll", "payroll journals with wages, taxes and benefits", "one journal after each pay run", "Scale",
     "Employee names are not sent to Tallyfox; wages are booked as totals per account."),
    ("Deel", "payroll", "contractor and employee payments", "one expense per payment cycle", "Scale",
     "Payments in other currencies are converted at Deel's rate on the payment date."),
    ("Expensify", "expenses", "approved expense reports with receipts", "imported when a report is approved", "Growth and Scale",
     "Reimbursable and company card expenses post to different accounts you choose."),
    ("Square", "point of sale", "daily sales, tips, refunds and card fees", "a daily sales summary", "every plan",
     "Cash sales are included in the summary; count your till so the cash account stays accurate."),
]

# country, standard rate, reduced, name of tax, invoice rule, filing
TALLYFOX_TAX = [
    ("Netherlands", "21%", "9% on food, books and some services", "BTW", "the customer's VAT number is required on business invoices for reverse charge", "quarterly, filed directly from Tallyfox"),
    ("Germany", "19%", "7% on food, books and public transport", "USt", "invoices must show the supply date and your tax number or VAT ID", "monthly or quarterly through ELSTER, using the figures from the Tax report"),
    ("France", "20%", "10% and 5.5%, plus 2.1% on medicines and press", "TVA", "invoices must show your SIREN number and the legal form of your company", "monthly or quarterly on impots.gouv"),
    ("Belgium", "21%", "12% and 6%", "BTW/TVA", "invoices need your enterprise number and, from 2026, must be sent as structured e-invoices between businesses", "quarterly through Intervat"),
    ("Spain", "21%", "10% and 4%", "IVA", "simplified invoices are allowed for sales under 400 euros", "quarterly with form 303"),
    ("Italy", "22%", "10%, 5% and 4%", "IVA", "every invoice between businesses must go through the SdI e-invoicing exchange", "quarterly payments with an annual return"),
    ("Ireland", "23%", "13.5% and 9%", "VAT", "invoices must be issued within 15 days of the end of the month of supply", "every two months, filed directly from Tallyfox"),
    ("United Kingdom", "20%", "5% on home energy and children's car seats", "VAT", "returns must be filed with Making Tax Digital software", "quarterly, filed directly from Tallyfox through Making Tax Digital"),
    ("Portugal", "23%", "13% and 6%", "IVA", "invoices need a certified software signature and a QR code, which Tallyfox adds", "monthly or quarterly, with the SAF-T file sent monthly"),
    ("Austria", "20%", "13% and 10%", "USt", "invoices over 400 euros need the customer's name and address", "monthly or quarterly through FinanzOnline"),
    ("Sweden", "25%", "12% and 6%", "moms", "invoices must show the VAT amount in Swedish kronor even when issued in another currency", "monthly, quarterly or yearly depending on turnover"),
    ("Denmark", "25%", "no reduced rate", "moms", "invoices to public bodies must be sent as OIOUBL e-invoices", "quarterly or half-yearly"),
    ("Norway", "25%", "15% on food and 12% on transport and hotels", "MVA", "foreign sellers below the threshold need not register", "every two months"),
    ("Poland", "23%", "8% and 5%", "VAT", "invoices go through the national KSeF e-invoicing system", "monthly with the JPK_V7 file"),
    ("Switzerland", "8.1%", "2.6% on food and 3.8% on accommodation", "MWST", "registration is required above 100,000 francs of worldwide turnover", "quarterly or half-yearly"),
]

# resource, path, what, note
TALLYFOX_API = [
    ("Invoices", "/v2/invoices", "create, list, approve, send and void invoices", "Listing supports filters by status, customer and due date, and returns 100 invoices per page."),
    ("Credit notes", "/v2/credit-notes", "create credit notes and allocate them to invoices", "An allocation cannot exceed the invoice's open balance."),
    ("Contacts", "/v2/contacts", "create and update customers and suppliers", "Use the external_id field to store your own system's identifier and look contacts up by it."),
    ("Payments", "/v2/payments", "record and delete payments against invoices", "A payment in another currency needs the exchange_rate field."),
    ("Expenses", "/v2/expenses", "create expenses and attach receipt files", "Receipts are uploaded as multipart form data, up to 10 MB each."),
    ("Products", "/v2/products", "manage the items you sell with a default price and tax rate", "Archived products stay on old invoices but cannot be added to new ones."),
    ("Bank transactions", "/v2/bank-transactions", "read imported bank lines and their reconciliation status", "This resource is read-only; bank lines come from feeds or statement imports."),
    ("Tax rates", "/v2/tax-rates", "list the tax rates of the business", "Refer to a rate by its id on invoice lines, not by its percentage."),
    ("Reports", "/v2/reports/{name}", "read the profit and loss, balance sheet and tax report", "Reports are returned as JSON rows with the same layout as on screen."),
    ("Webhooks", "/v2/webhooks", "subscribe to events such as invoice.paid and contact.created", "Each delivery is signed with an HMAC-SHA256 header, and failed deliveries are retried for 24 hours."),
]

# --- Rivertrail: stores and gear care --------------------------------------------------------------
# city, state, address, hours note, services, extra
RIVERTRAIL_STORES = [
    ("Portland", "OR", "1200 NW Everett Street", "9 am to 9 pm daily", "bike and ski workshop, rentals, repair drop-off", "Our flagship store houses the repair workshop and a climbing wall open to customers on weekends."),
    ("Seattle", "WA", "455 Westlake Avenue N", "9 am to 9 pm, Sundays 10 am to 7 pm", "ski workshop, rentals, classes", "Paid parking in the building garage is free for two hours with a purchase."),
    ("Spokane", "WA", "2020 N Division Street", "10 am to 8 pm", "rentals, bike workshop", "Snowshoe and cross-country ski rentals are available from December to March."),
    ("Bend", "OR", "61535 S Highway 97", "9 am to 8 pm", "ski workshop, rentals", "The store rents stand-up paddleboards for the Deschutes river in summer."),
    ("Boise", "ID", "8300 W Emerald Street", "10 am to 8 pm", "bike workshop, classes", "Monthly bike maintenance classes are held on the first Tuesday evening."),
    ("Salt Lake City", "UT", "3285 E 3300 S", "10 am to 9 pm", "ski workshop, rentals, classes", "Avalanche safety courses run from November to February."),
    ("Denver", "CO", "1416 Platte Street", "9 am to 9 pm", "bike and ski workshop, rentals, classes", "Located next to the Platte River trail with free customer parking for 90 minutes."),
    ("Boulder", "CO", "2700 Canyon Boulevard", "10 am to 8 pm", "climbing shop, classes", "It has the largest climbing gear selection of all our stores, and no rentals."),
    ("Albuquerque", "NM", "1550 Mercantile Avenue NE", "10 am to 7 pm", "bike workshop", "Desert hiking classes focus on heat safety and water planning."),
    ("Phoenix", "AZ", "12634 N Paradise Village Parkway", "9 am to 8 pm", "bike workshop, rentals", "Summer hours start at 7 am so you can shop before the heat."),
    ("Tucson", "AZ", "160 W Wetmore Road", "10 am to 7 pm", "rentals", "Camping gear rentals are in high demand from October to April; book early."),
    ("Sacramento", "CA", "1790 Expo Parkway", "10 am to 9 pm", "bike workshop, rentals, classes", "Kayak rentals include a roof rack loan for cars without one."),
    ("San Francisco", "CA", "840 Brannan Street", "10 am to 8 pm", "bike workshop, classes", "Street parking is limited; the store is a five-minute walk from the Caltrain station."),
    ("San Jose", "CA", "400 El Paseo de Saratoga", "10 am to 8 pm", "rentals, classes", "Family camping weekends are organised every month from May to September."),
    ("Los Angeles", "CA", "402 W Broadway, Glendale", "10 am to 9 pm", "bike and ski workshop, rentals", "Ski rentals for the San Gabriel mountains are available from December."),
    ("San Diego", "CA", "5556 Copley Drive", "10 am to 8 pm", "rentals, surf and paddle shop", "It is the only store that rents surfboards and wetsuits."),
    ("Reno", "NV", "2225 Harvard Way", "9 am to 8 pm", "ski workshop, rentals", "Lake Tahoe trail maps and day passes for the tram are sold at the counter."),
    ("Missoula", "MT", "2230 N Reserve Street", "10 am to 7 pm", "rentals, fly fishing shop", "Fly fishing licences for Montana can be bought in store."),
    ("Anchorage", "AK", "1200 W Northern Lights Boulevard", "10 am to 8 pm, shorter in winter", "rentals, classes", "Bear-aware hiking classes are held every Saturday in summer."),
    ("Minneapolis", "MN", "7905 Fremont Avenue S, Bloomington", "10 am to 9 pm", "ski workshop, classes", "Winter camping and ice fishing gear is stocked from November."),
    ("Chicago", "IL", "1466 N Halsted Street", "10 am to 9 pm", "bike workshop, classes", "A covered bike park is free for customers while they shop."),
    ("Austin", "TX", "601 N Lamar Boulevard", "10 am to 9 pm", "bike workshop, rentals", "Paddleboard rentals for Lady Bird Lake are available from March to October."),
    ("Asheville", "NC", "1 Tunnel Road", "10 am to 8 pm", "rentals, classes", "Blue Ridge Parkway trail conditions are posted daily at the entrance."),
    ("Boston", "MA", "401 Park Drive", "10 am to 9 pm", "bike workshop, classes", "The store is at the Fenway stop on the Green Line."),
    ("Burlington", "VT", "100 Dorset Street", "10 am to 7 pm", "ski workshop, rentals", "Backcountry ski touring kits can be rented by the day."),
]

# item, cleaning, storing, extra
RIVERTRAIL_CARE = [
    ("Down jackets", "Wash in a front-loading machine on a gentle cycle with a down-specific wash, then tumble dry on low with two clean tennis balls to break up clumps. Drying takes several hours; stop only when no clumps remain.",
     "Store loosely on a hanger, never compressed in its stuff sack for long periods.", "Small feathers poking through are normal; pull them back in from the other side rather than pulling them out."),
    ("Waterproof shells", "Wash with a technical cleaner, not regular detergent, which leaves residues that block breathability. Rinse twice.",
     "Hang to dry fully before storing in a cool, dry place.", "When water stops beading on the surface, tumble dry on low heat for 20 minutes to reactivate the water-repellent finish, or re-proof it with a spray-on treatment."),
    ("Fleece", "Wash inside out on a cool cycle and skip fabric softener, which clogs the fibres.", "Fold and store on a shelf.", "Wash fleece in a microfibre-catching bag to keep shed fibres out of waterways."),
    ("Merino base layers", "Wash on a wool cycle at 30 °C with a wool detergent, or by hand.", "Fold rather than hang so the knit does not stretch.", "Merino resists odour, so airing it between uses is often enough; moths love it, so store it clean."),
    ("Leather boots", "Brush off dirt, then clean with lukewarm water and a soft brush. Remove the insoles and laces.", "Dry away from heaters and fires, stuffed with newspaper, and store in a ventilated place.", "Apply a leather conditioner or wax a few times a season to keep the leather supple and waterproof."),
    ("Synthetic hiking shoes", "Rinse mud off with water and a soft brush, never in a washing machine.", "Air dry at room temperature with the insoles out.", "Re-treat the uppers with a water-repellent spray once they start soaking up water."),
    ("Tents", "Set the tent up and sponge it with lukewarm water and a mild non-detergent soap; never machine wash it.", "Dry it completely before packing, and store it loosely in a large cotton bag rather than its tight stuff sack.", "Mildew from packing it wet damages the coating and cannot be removed, so always dry it at home after a rainy trip."),
    ("Sleeping bags", "Wash only when needed, in a large front-loading machine with a down or synthetic wash to match the fill.", "Store uncompressed in the large mesh storage sack supplied.", "A liner keeps the bag clean and means it needs washing far less often."),
    ("Sleeping pads", "Wipe with a damp cloth and mild soap, valve closed.", "Store unrolled with the valve open, under a bed or behind a door.", "Find a leak by inflating the pad and brushing soapy water over it; bubbles show the hole, which a patch kit repairs."),
    ("Backpacks", "Empty the pack, shake it out and hand wash it in a bath with mild soap. Do not machine wash it.", "Hang to dry out of direct sunlight and store it empty.", "Clean the zips with a toothbrush when they start to stick, and use a zip lubricant."),
    ("Water filters", "Backflush the filter after every trip with the supplied syringe until the water runs clear.", "Let it dry fully with the caps off before storing it.", "Never let a used hollow-fibre filter freeze: ice cracks the fibres without visible damage, and then it no longer removes bacteria."),
    ("Stoves", "Wipe the burner after use and clear the jet with the supplied needle if the flame turns yellow.", "Store with the fuel canister removed.", "Check the O-rings each season and replace them if they are cracked; a leaking O-ring is a fire risk."),
    ("Trekking poles", "Take the sections apart and wipe them dry after wet trips.", "Store apart so the locking mechanisms do not seize.", "Replacement tips and baskets are sold in stores and can be fitted in a minute."),
    ("Climbing ropes", "Wash in lukewarm water with rope wash, and keep it away from chemicals such as battery acid.", "Store coiled loosely in a rope bag, in the dark.", "Retire a rope after a big fall or after ten years even if unused; our stores do not accept ropes for trade-in."),
    ("Skis and snowboards", "Wipe the edges dry after each day to prevent rust.", "Apply a storage coat of wax over the summer and keep them upright in a dry room.", "Our workshops offer an end-of-season service with edge sharpening and storage wax for 55 dollars."),
]


def lumora() -> None:
    for name, kind, fitting, lumens, watts, colours, hours, special, install in LUMORA_PRODUCTS:
        slug = "product-" + name.lower().replace(" ", "-").replace("/", "-")
        if kind == "accessory":
            overview = f"The Lumora {name} is an accessory for your Lumora system. {special}"
            spec = pick(name,
                f"It connects to the Lumora Bridge and is powered by its {fitting} supply. It needs a Bridge: it cannot be used with Bluetooth alone.",
                f"Power: {fitting}. It pairs with the Lumora Bridge and appears in the app under Accessories, where you choose which room or lights it controls.")
        else:
            overview = f"The Lumora {name} is a {kind} with a {fitting} fitting. {special}"
            spec = pick(name,
                f"It gives up to {lumens} lumens and uses at most {watts} W. It shows {colours}. Rated life is {hours:,} hours, about {hours // 1000 // 3} years at three hours a day.",
                f"Brightness: {lumens} lumens at full output, with a maximum power of {watts} W. Colour: {colours}. Expected lifetime: {hours:,} hours.",
                f"At full brightness it reaches {lumens} lumens while drawing {watts} W. Colour range: {colours}. It is rated for {hours:,} hours of use.")
        compat = pick(name + "c",
            f"The {name} works with the Lumora Bridge, Matter, Alexa, Google Home and Apple Home through the Bridge.",
            f"Control the {name} with the Lumora Home app, and through the Bridge with Alexa, Google Home, Apple Home and other Matter platforms.")
        write("lumora", slug, f"Lumora {name}", [
            ("Overview", overview),
            ("Specifications" if kind != "accessory" else "Power and pairing", spec + " " + compat),
            ("Installation", install),
        ])
    sections = []
    for code, title, cause, fix in LUMORA_ERRORS:
        sections.append((f"{code} {title}", pick(code,
            f"The app shows {code} when {cause}. To fix it, {fix}.",
            f"Error {code} means {cause}. What to do: {fix}.",
            f"You see {code} because {cause}. Solution: {fix}. If the error persists, contact support and mention the code.")))
    write("lumora", "error-codes", "Lumora error codes", sections)


def tallyfox() -> None:
    for name, category, syncs, flow, plan, caveat in TALLYFOX_INTEGRATIONS:
        slug = "integration-" + name.lower().replace(" ", "-")
        write("tallyfox", slug, f"Tallyfox and {name}", [
            ("What the integration does", pick(name,
                f"The {name} integration brings {syncs} into Tallyfox, so your books stay up to date without typing. It is a {category} integration available on {plan}.",
                f"Connect {name} to keep {syncs} in your Tallyfox books automatically. This {category} integration is included on {plan}.")),
            ("Connecting " + name, pick(name + "c",
                f"Go to Settings, then Integrations, find {name} and click Connect. You sign in to {name} and allow Tallyfox access, then choose the Tallyfox accounts to book to. Disconnecting stops new data but keeps what was already imported.",
                f"In Tallyfox, open Settings, then Integrations, then {name}. Click Connect and authorise Tallyfox in the {name} window. Choose the accounts for sales and fees. You can disconnect at any time; data already imported stays.")),
            ("How syncing works", f"With {name}, {flow}. {caveat}"),
        ])
    for country, standard, reduced, tax, rule, filing in TALLYFOX_TAX:
        slug = "tax-" + country.lower().replace(" ", "-")
        write("tallyfox", slug, f"{tax} in {country}", [
            (f"{tax} rates in {country}", pick(country,
                f"Tallyfox sets up the {country} standard {tax} rate of {standard} and the reduced rates: {reduced}. Zero-rated exports and intra-community supplies get their own rates.",
                f"The standard rate of {tax} in {country} is {standard}; the reduced rates are {reduced}. Tallyfox creates all of them when a {country} business signs up.")),
            (f"Invoices and returns in {country}", f"In {country}, {rule}. Returns are {filing}."),
        ])
    sections = [("Authentication", "The Tallyfox API uses OAuth 2.0. Create an app under Settings, then Developer, to get a client id and secret; each business that connects grants your app access. For your own scripts, create a personal access token on the same page. Tokens are sent in the Authorization header as Bearer tokens and expire after 60 minutes; use the refresh token to get a new one."),
                ("Rate limits", "Each app may make 60 requests per minute and 5,000 per day for each connected business. When you exceed a limit, the API answers with status 429 and a Retry-After header giving the seconds to wait. Use webhooks instead of polling to stay well below the limits."),
                ("Sandbox", "Every developer account comes with a sandbox business full of demo data, separate from real businesses. The sandbox has the same API with its own base URL, and its data is reset every Sunday.")]
    for resource, path, what, note in TALLYFOX_API:
        sections.append((f"{resource} endpoint", f"The {path} endpoint lets you {what}. {note}"))
    write("tallyfox", "api", "Tallyfox API reference", sections)


def rivertrail() -> None:
    by_state: dict[str, list[tuple[str, str]]] = {}
    for city, state, address, hours, services, extra in RIVERTRAIL_STORES:
        by_state.setdefault(state, []).append((f"Rivertrail {city}", pick(city,
            f"Find us at {address}, {city}, {state}. Opening hours: {hours}. Services: {services}. {extra}",
            f"The {city} store is at {address}. It is open {hours} and offers {services}. {extra}",
            f"Address: {address}, {city}. Hours: {hours}. In this store: {services}. {extra}")))
    for state, sections in by_state.items():
        write("rivertrail", f"stores-{state.lower()}", f"Rivertrail stores in {state}", sections)
    for item, cleaning, storing, extra in RIVERTRAIL_CARE:
        slug = "care-" + item.lower().replace(" ", "-")
        write("rivertrail", slug, f"Caring for {item.lower()}", [
            (f"Cleaning {item.lower()}", cleaning),
            (f"Drying and storing {item.lower()}", storing + " " + extra),
        ])


def main() -> None:
    for old in CORPUS.glob("*/gen-*.md"):
        old.unlink()
    lumora()
    tallyfox()
    rivertrail()


if __name__ == "__main__":
    main()
