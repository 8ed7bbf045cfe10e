"""The widget in a real browser: a shop page on another origin than the API embeds it with the
two-line snippet; a visitor chats, reloads, clicks, fills a form; the host page hears the events;
hostile answers stay text; axe-core finds nothing serious. Fixtures: tests/browser/conftest.py."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from chatspark.api.widget_assets import WIDGET_JS
from chatspark.visitors import user_hash
from tests.browser.conftest import HostSite, host_page
from tests.conftest import RunningServer
from tests.fake_openai import reply


SCREENSHOT = Path(__file__).resolve().parent.parent.parent / "docs" / "widget.png"
ANSWER = "We ship to every country in the EU within three days."
# Records the text of the newest bot bubble at every change, from inside the page.
WATCH_ANSWER = """() => {
  const log = document.querySelector('[data-chatspark]').shadowRoot.querySelector('.log');
  window.snapshots = [];
  new MutationObserver(() => {
    const last = log.lastElementChild;
    if (last && last.matches('.message.bot:not(.typing)')) window.snapshots.push(last.textContent);
  }).observe(log, {subtree: true, childList: true, characterData: true});
}"""


def open_widget(page: Any, bot_name: str = "Shopbot") -> None:
    page.get_by_role("button", name=f"Open chat with {bot_name}").click()
    page.get_by_role("dialog", name=bot_name).wait_for()


def events(page: Any, name: str | None = None) -> list[Any]:
    recorded = page.evaluate("window.events")
    return [payload for event, payload in recorded if event == name] if name else recorded


def wait_for_event(page: Any, name: str, count: int = 1) -> list[Any]:
    page.wait_for_function(f"window.events.filter(e => e[0] === {name!r}).length >= {count}")
    return events(page, name)


def test_the_answer_streams_in_token_by_token_and_the_conversation_survives_a_reload(  # type: ignore[no-untyped-def]
    page, api: RunningServer, host_site: HostSite, make_agent: Callable[..., int], fake_openai, admin: httpx.Client
) -> None:
    agent = make_agent(welcomeMessage="Hello from the shop!", primaryColor="#0f766e")
    fake_openai.enqueue(reply(ANSWER, gap=0.08))  # one word per chunk
    page.goto(host_site.put("/stream", host_page(api.base_url, str(agent))))

    open_widget(page)
    assert page.get_by_text("Hello from the shop!").is_visible()
    box = page.get_by_role("textbox", name="Message to Shopbot")
    assert box.evaluate("node => node.getRootNode().activeElement === node")  # focus moved into the panel
    page.evaluate(WATCH_ANSWER)
    box.fill("Do you ship abroad?")
    box.press("Enter")
    wait_for_event(page, "agent-response")

    snapshots = [text for text in page.evaluate("window.snapshots") if text]
    partial = {text for text in snapshots if text != ANSWER}
    assert len(partial) >= 2, snapshots  # seen growing, not arriving whole
    assert all(ANSWER.startswith(text) for text in partial), partial
    assert snapshots[-1] == ANSWER

    cid = events(page, "conversation-started")[0]["conversationId"]
    message_id = events(page, "agent-response")[0]["messageId"]
    assert events(page) == [
        ["conversation-started", {"conversationId": cid}],
        ["user-message", {"message": "Do you ship abroad?", "conversationId": cid}],
        ["agent-response", {"message": ANSWER, "conversationId": cid, "messageId": message_id}],
    ]
    stored = admin.get(f"/api/v1/agents/{agent}/conversations/{cid}/messages").json()["messages"]
    assert [(m["role"], m["content"]) for m in stored] == [("user", "Do you ship abroad?"), ("assistant", ANSWER)]

    page.reload()
    open_widget(page)
    log = page.get_by_role("log")
    log.get_by_text(ANSWER).wait_for()
    assert log.locator(".message.user").all_text_contents() == ["Do you ship abroad?"]
    assert log.locator(".message.bot").all_text_contents() == ["Hello from the shop!", ANSWER]

    # The next turn continues the same conversation, no new conversation-started.
    fake_openai.enqueue(reply("Yes, free above 50 euros."))
    box.fill("Is shipping free?")
    box.press("Enter")
    assert wait_for_event(page, "agent-response")[0]["conversationId"] == cid
    assert events(page, "conversation-started") == []
    assert len(admin.get(f"/api/v1/agents/{agent}/conversations/{cid}/messages").json()["messages"]) == 4
    assert page.errors == []


def test_shift_enter_is_a_new_line_escape_closes_and_focus_returns_to_the_launcher(  # type: ignore[no-untyped-def]
    page, api: RunningServer, host_site: HostSite, make_agent: Callable[..., int], fake_openai
) -> None:
    agent = make_agent()
    page.goto(host_site.put("/keys", host_page(api.base_url, f"ag_{agent}")))
    launcher = page.get_by_role("button", name="Open chat with Shopbot")
    launcher.focus()
    page.keyboard.press("Enter")
    box = page.get_by_role("textbox", name="Message to Shopbot")
    box.wait_for()
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert box.input_value() == "first line\nsecond line"
    assert events(page) == []  # nothing sent

    page.keyboard.press("Enter")
    wait_for_event(page, "agent-response")
    assert events(page, "user-message")[0]["message"] == "first line\nsecond line"
    assert box.input_value() == ""

    page.keyboard.press("Escape")
    assert page.get_by_role("dialog").count() == 0
    assert launcher.get_attribute("aria-expanded") == "false"
    assert launcher.evaluate("node => node.getRootNode().activeElement === node")


def test_a_suggested_prompt_is_sent_when_clicked_and_the_agents_values_win_over_data(  # type: ignore[no-untyped-def]
    page, api: RunningServer, host_site: HostSite, make_agent: Callable[..., int], fake_openai
) -> None:
    agent = make_agent(suggestedMessages=["What do you sell?", "Where are you?"])
    data = {"welcomeMessage": "Welcome from data", "suggestedMessage": ["From data, ignored"]}
    page.goto(host_site.put("/suggest", host_page(api.base_url, str(agent), data)))
    open_widget(page)
    # The agent has no welcome message: the page's fills in; it has suggestions: they win.
    assert page.get_by_text("Welcome from data").is_visible()
    assert page.get_by_text("From data, ignored").count() == 0

    fake_openai.enqueue(reply("Shoes and socks."))
    page.get_by_role("button", name="What do you sell?").click()
    wait_for_event(page, "agent-response")
    assert fake_openai.requests[-1]["messages"][-1] == {"role": "user", "content": "What do you sell?"}
    assert events(page, "user-message")[0]["message"] == "What do you sell?"
    assert page.get_by_role("log").get_by_text("Shoes and socks.").is_visible()
    assert page.get_by_role("button", name="Where are you?").count() == 0  # prompts are for starting


def test_data_fills_in_what_the_agent_lacks_and_update_props_shows_it(  # type: ignore[no-untyped-def]
    page, api: RunningServer, host_site: HostSite, make_agent: Callable[..., int]
) -> None:
    agent = make_agent()
    data = {"welcomeMessage": "Hi from the page", "suggestedMessage": ["Track my order"]}
    page.goto(host_site.put("/data", host_page(api.base_url, str(agent), data)))
    open_widget(page)
    assert page.get_by_role("button", name="Track my order").is_visible()
    page.evaluate("window.chatSparkInstances[%r].updateProps({data: {welcomeMessage: 'Hi again', "
                  "suggestedMessage: ['Return an item']}})" % str(agent))
    page.get_by_text("Hi again").wait_for()
    assert page.get_by_role("button", name="Return an item").is_visible()
    assert page.get_by_text("Hi from the page").count() == 0


def test_a_lead_form_submits_a_lead_the_server_lists(  # type: ignore[no-untyped-def]
    page, api: RunningServer, host_site: HostSite, make_agent: Callable[..., int], admin: httpx.Client
) -> None:
    form = {"id": "callback", "type": "form", "label": "Get a call back", "fields": [
        {"key": "name", "label": "Your name", "required": True},
        {"key": "email", "label": "Email", "required": True, "type": "email"},
        {"key": "companyName", "label": "Company"},
    ]}
    agent = make_agent(actions=[form])
    page.goto(host_site.put("/lead", host_page(api.base_url, str(agent), {"name": "Ada Lovelace"})))
    open_widget(page)
    page.get_by_role("button", name="Get a call back").click()
    name = page.get_by_role("textbox", name="Your name (required)")
    assert name.input_value() == "Ada Lovelace"  # data.name prefills
    assert name.evaluate("node => node.getRootNode().activeElement === node")

    page.get_by_role("button", name="Send").click()  # email missing: refused in the page
    assert page.get_by_text("Please fill this in.").is_visible()
    assert events(page, "lead-captured") == []
    page.get_by_role("textbox", name="Email (required)").fill("ada@example.com")
    page.get_by_role("textbox", name="Company").fill("Analytical Engines Ltd")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function("""() => { const root = document.querySelector('[data-chatspark]').shadowRoot;
      return root.querySelector('.notice') || root.querySelector('.form [role=alert]').textContent; }""")
    assert page.get_by_role("alert").all_text_contents() == []  # no refusal shown in the form

    lead = {"name": "Ada Lovelace", "email": "ada@example.com", "phone": None,
            "companyName": "Analytical Engines Ltd", "message": None}
    assert wait_for_event(page, "lead-captured") == [lead]
    assert events(page, "action-triggered") == [{"actionId": "callback", "actionType": "form", "data": {
        "name": "Ada Lovelace", "email": "ada@example.com", "companyName": "Analytical Engines Ltd"}}]
    page.get_by_text("Thanks! We received your details.").wait_for()

    listed = admin.get(f"/api/v1/agents/{agent}/leads")
    assert listed.status_code == 200, listed.text
    [stored] = listed.json()["leads"]
    assert {key: stored[key] for key in lead} == lead


def test_button_and_link_actions_tell_the_host_page_and_only_http_links_open(  # type: ignore[no-untyped-def]
    page, api: RunningServer, host_site: HostSite, make_agent: Callable[..., int]
) -> None:
    agent = make_agent(actions=[
        {"id": "human", "type": "button", "label": "Talk to a human"},
        {"id": "docs", "type": "link", "label": "Shipping policy", "url": "https://shop.example/shipping"},
    ])
    page.goto(host_site.put("/actions", host_page(api.base_url, str(agent))))
    open_widget(page)
    page.get_by_role("button", name="Talk to a human").click()
    assert events(page, "action-triggered") == [
        {"actionId": "human", "actionType": "button", "data": {"label": "Talk to a human"}}]

    link = page.get_by_role("link", name="Shipping policy")
    assert link.get_attribute("href") == "https://shop.example/shipping"
    assert "noopener" in link.get_attribute("rel")
    page.context.route("https://shop.example/**", lambda route: route.fulfill(body="<title>Shipping</title>"))
    with page.context.expect_page() as opened:
        link.click()
    assert opened.value.url == "https://shop.example/shipping"
    assert page.evaluate("window.events.filter(e => e[0] === 'action-triggered').length") == 2
    assert opened.value.evaluate("window.opener") is None


def test_data_actions_with_a_script_url_are_not_links(  # type: ignore[no-untyped-def]
    page, api: RunningServer, host_site: HostSite, make_agent: Callable[..., int]
) -> None:
    agent = make_agent()  # no actions of its own: the page's are used, and checked in the widget
    data = {"actions": [{"id": "bad", "type": "link", "label": "Bad link", "url": "javascript:alert(1)"},
                        {"id": "ok", "type": "link", "label": "Good link", "url": "https://shop.example/"}]}
    page.goto(host_site.put("/bad-actions", host_page(api.base_url, str(agent), data)))
    open_widget(page)
    assert page.get_by_role("link", name="Good link").is_visible()
    assert page.get_by_text("Bad link").count() == 0


HOSTILE = "\n".join([
    "Here you go: <img src=x onerror=alert(1)> and <script>alert(1)</script>",
    "<svg onload=alert(1)><circle r=5></circle></svg>",
    "Click [x](javascript:alert(1)) or [y](data:text/html,<script>alert(1)</script>)",
    "or [z](JaVaScRiPt:alert(1)) or <a href=\"javascript:alert(1)\">a</a> or <iframe src=\"javascript:alert(1)\">",
    "**bold** and a [real link](https://shop.example/help)",
])


def test_hostile_answers_are_text_no_script_runs_and_nothing_navigates(  # type: ignore[no-untyped-def]
    page, api: RunningServer, host_site: HostSite, make_agent: Callable[..., int], fake_openai
) -> None:
    agent = make_agent()
    fake_openai.enqueue(reply(HOSTILE, chunks=7))  # tags split across chunks too
    url = host_site.put("/xss", host_page(api.base_url, str(agent)))
    page.goto(url)
    open_widget(page)
    box = page.get_by_role("textbox", name="Message to Shopbot")
    box.fill("<img src=x onerror=alert(2)>")  # the visitor's own text is text too
    box.press("Enter")
    wait_for_event(page, "agent-response")

    def assert_inert() -> None:
        log = page.get_by_role("log")
        for tag in ("img", "script", "svg", "iframe", "circle"):
            assert log.locator(tag).count() == 0, tag
        hrefs = log.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
        assert hrefs == ["https://shop.example/help"]
        assert log.locator("[onerror], [onload]").count() == 0
        assert "<img src=x onerror=alert(1)>" in log.text_content()  # shown, as text
        assert log.locator("strong").all_text_contents() == ["bold"]
        time.sleep(0.2)  # an onerror/onload handler would have fired by now
        assert page.dialogs == []
        assert page.url == url
        assert page.errors == []

    assert_inert()
    page.reload()  # the same answer rendered again from the stored conversation
    open_widget(page)
    page.get_by_role("log").locator("strong").wait_for()
    assert_inert()


def test_api_base_points_a_copy_of_the_script_served_elsewhere_at_the_service(  # type: ignore[no-untyped-def]
    page, api: RunningServer, host_site: HostSite, make_agent: Callable[..., int], fake_openai
) -> None:
    agent = make_agent()
    script = host_site.put("/assets/widget.js", WIDGET_JS.read_text())  # as from a CDN: the shop's origin
    page.goto(host_site.put("/copy", host_page(api.base_url, str(agent), script=script,
                                               options=f", apiBase: {api.base_url + '/'!r}")))
    open_widget(page)
    fake_openai.enqueue(reply("Hello from the service."))
    box = page.get_by_role("textbox", name="Message to Shopbot")
    box.fill("Hi")
    box.press("Enter")
    assert wait_for_event(page, "agent-response")[0]["message"] == "Hello from the service."


def sse(*frames: Any) -> str:
    return "".join(f"data: {frame if isinstance(frame, str) else json.dumps(frame)}\n\n" for frame in frames)


def test_sources_are_listed_under_the_answer_and_a_failed_stream_says_so(  # type: ignore[no-untyped-def]
    page, api: RunningServer, host_site: HostSite, make_agent: Callable[..., int]
) -> None:
    """Frames the service sends (served here by the test: a grounded answer, then a stream that
    fails after a delta), read by the widget exactly as it reads the service's."""
    agent = make_agent()
    page.goto(host_site.put("/frames", host_page(api.base_url, str(agent))))
    open_widget(page)
    cors = {"access-control-allow-origin": host_site.origin}
    sources = [
        {"trainingId": 1, "source": "help", "title": "Returns policy", "url": "https://shop.example/returns", "score": 0.9},
        {"trainingId": 2, "source": "faq", "title": None, "url": None, "score": 0.5},
        {"trainingId": 3, "source": "evil", "title": "Evil", "url": "javascript:alert(1)", "score": 0.4},
    ]
    streams = [
        sse({"delta": "Free within 30 days.", "conversationId": "c1"},
            {"delta": "", "conversationId": "c1", "done": True, "messageId": "m1", "sources": sources}, "[DONE]"),
        sse({"delta": "Half an ans", "conversationId": "c1"},
            {"delta": "", "conversationId": "c1", "error": {"code": "STREAMING_ERROR", "message": "upstream cut"}},
            "[DONE]"),
    ]
    page.route("**/chat", lambda route: route.fulfill(status=200, headers=cors, content_type="text/event-stream",
                                                      body=streams.pop(0)))
    box = page.get_by_role("textbox", name="Message to Shopbot")
    box.fill("Returns?")
    box.press("Enter")
    listed = page.get_by_role("list", name="Sources")
    listed.wait_for()
    assert listed.get_by_role("listitem").all_text_contents() == ["Returns policy", "faq", "Evil"]
    assert listed.get_by_role("link").evaluate_all("links => links.map(a => a.href)") == [
        "https://shop.example/returns"]
    assert events(page, "agent-response") == [
        {"message": "Free within 30 days.", "conversationId": "c1", "messageId": "m1"}]

    box.fill("And exchanges?")
    box.press("Enter")
    page.get_by_role("alert").wait_for()
    assert page.get_by_role("alert").text_content() == "The answer was interrupted. Please try again."
    assert page.get_by_role("log").get_by_text("Half an ans").is_visible()  # what came stays, the alert says it stopped
    assert len(events(page, "agent-response")) == 1
    assert page.get_by_role("button", name="Send message").is_enabled()


def test_a_page_on_an_origin_the_agent_does_not_allow_gets_no_session(  # type: ignore[no-untyped-def]
    page, api: RunningServer, stranger_site: HostSite, make_agent: Callable[..., int]
) -> None:
    agent = make_agent()
    with page.expect_event("requestfailed", lambda request: request.url.endswith("/session")):
        page.goto(stranger_site.put("/elsewhere", host_page(api.base_url, str(agent))))
    host = page.locator("[data-chatspark]")
    page.wait_for_function("document.querySelector('[data-chatspark]').dataset.state === 'refused'")
    assert host.locator("button.launcher").is_hidden()
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('chatspark:'))") == []
    # What the browser could not read: the service refused it, and granted it nothing.
    refused = httpx.post(f"{api.base_url}/api/v1/widget/{agent}/session", json={},
                         headers={"origin": stranger_site.origin})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "AGENT_ACCESS_DENIED"
    assert "access-control-allow-origin" not in refused.headers


def test_limits_and_refusals_read_as_sentences(  # type: ignore[no-untyped-def]
    page, api: RunningServer, host_site: HostSite, make_agent: Callable[..., int], fake_openai
) -> None:
    agent = make_agent(widgetMonthlyCap=1)
    page.goto(host_site.put("/limits", host_page(api.base_url, str(agent))))
    open_widget(page)
    box = page.get_by_role("textbox", name="Message to Shopbot")
    box.fill("first")
    box.press("Enter")
    wait_for_event(page, "agent-response")
    box.fill("second")
    box.press("Enter")  # the agent's monthly widget cap: 402 CREDITS_EXHAUSTED
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "reached its limit for this month" in alert.text_content()
    assert box.input_value() == "second"  # not taken: given back to the visitor, not lost
    assert page.get_by_role("log").locator(".message.user").all_text_contents() == ["first"]
    box.fill("")

    # A 429 (served by the test, as the service would: with Retry-After) says how long to wait.
    cors = {"access-control-allow-origin": host_site.origin, "access-control-expose-headers": "retry-after"}
    page.route("**/chat", lambda route: route.fulfill(status=429, headers={**cors, "retry-after": "7"},
                                                      content_type="application/json",
                                                      body=json.dumps({"error": {"code": "RATE_LIMIT_EXCEEDED",
                                                                                 "message": "slow down"}})))
    box.fill("third")
    box.press("Enter")
    page.get_by_text("Please wait 7 seconds").wait_for()
    assert len(events(page, "user-message")) == 1  # only the turn the service took


def test_identity_verification_binds_the_visitor_to_the_user(  # type: ignore[no-untyped-def]
    page, api: RunningServer, host_site: HostSite, make_agent: Callable[..., int]
) -> None:
    secret = "identity-secret-for-the-shop-0001"
    agent = make_agent(identitySecret=secret, requireIdentity=True)
    data = {"userId": "user-42", "hash": user_hash(secret, "user-42")}
    with page.expect_response(lambda response: response.url.endswith("/session")) as session:
        page.goto(host_site.put("/identity", host_page(api.base_url, str(agent), data)))
    assert session.value.status == 200
    assert session.value.json()["identified"] is True
    assert json.loads(session.value.request.post_data) == {"userId": "user-42", "hash": data["hash"]}
    open_widget(page)

    # Another user signs in on the page: a session for them, without the first user's token.
    with page.expect_response(lambda response: response.url.endswith("/session")) as switched:
        page.evaluate("([id, user, hash]) => window.chatSparkInstances[id].updateProps({data: {userId: user, hash}})",
                      [str(agent), "user-43", user_hash(secret, "user-43")])
    assert switched.value.json()["identified"] is True
    assert json.loads(switched.value.request.post_data) == {"userId": "user-43", "hash": user_hash(secret, "user-43")}
    assert switched.value.json()["visitorId"] != session.value.json()["visitorId"]

    # A wrong hash: refused, so no widget.
    with page.expect_response(lambda response: response.url.endswith("/session")) as wrong:
        page.goto(host_site.put("/identity-wrong", host_page(api.base_url, str(agent),
                                                             {"userId": "user-42", "hash": "0" * 64})))
    assert wrong.value.status == 403
    page.wait_for_function("document.querySelector('[data-chatspark]').dataset.state === 'refused'")


# The widget and everything in its shadow root; the host page is the test's own.
AXE_RUN = "axe.run({include: [['[data-chatspark]']]}, {resultTypes: ['violations']})"


def test_phone_sized_viewport_and_no_serious_accessibility_violations(  # type: ignore[no-untyped-def]
    browser, api: RunningServer, host_site: HostSite, make_agent: Callable[..., int], fake_openai, axe_source: str
) -> None:
    agent = make_agent(welcomeMessage="Hi! Ask me about orders, shipping or returns.", primaryColor="#7c3aed",
                       suggestedMessages=["Where is my order?", "How do returns work?"],
                       actions=[{"id": "callback", "type": "form", "label": "Get a call back", "primary": True,
                                 "fields": [{"key": "email", "label": "Email", "required": True}]}])
    fake_openai.enqueue(reply("Returns are free within **30 days**:\n\n- pack the item\n- print the label\n"
                              "- drop it at any post office\n\nDetails: [returns policy](https://shop.example/returns)"))
    for viewport in ({"width": 375, "height": 667}, {"width": 1024, "height": 768}):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.goto(host_site.put("/a11y", host_page(api.base_url, str(agent))))
        open_widget(page)
        if viewport["width"] == 375:
            dialog = page.get_by_role("dialog").bounding_box()
            assert dialog is not None
            assert dialog["x"] >= 0 and dialog["y"] >= 0
            assert dialog["x"] + dialog["width"] <= 375 and dialog["y"] + dialog["height"] <= 667
            box = page.get_by_role("textbox", name="Message to Shopbot")
            assert box.is_visible() and box.bounding_box()["y"] + box.bounding_box()["height"] <= 667
            box.fill("How do returns work?")
            box.press("Enter")
            page.wait_for_function("window.events.some(e => e[0] === 'agent-response')")
        page.add_script_tag(content=axe_source)
        results = page.evaluate(AXE_RUN)
        # It looked inside the widget's shadow root (targets there are [host, inner] pairs).
        assert any(isinstance(node["target"][0], list) for rule in results["passes"] for node in rule["nodes"])
        serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]]) for v in results["violations"]
                   if v["impact"] in ("serious", "critical")]
        assert serious == [], serious
        if viewport["width"] == 375:
            page.get_by_role("button", name="Get a call back").click()  # the form view too
            results = page.evaluate(AXE_RUN)
            assert [v["id"] for v in results["violations"] if v["impact"] in ("serious", "critical")] == []
        context.close()


def test_screenshot_of_the_open_widget(  # type: ignore[no-untyped-def]
    browser, api: RunningServer, host_site: HostSite, make_agent: Callable[..., int], fake_openai, tmp_path: Path
) -> None:
    """The picture the README shows; `UPDATE_SCREENSHOT=1` writes it to docs/widget.png."""
    agent = make_agent(name="Example shop", botName="Sparky", welcomeMessage="Hi! I'm Sparky. How can I help?",
                       suggestedMessages=["How do returns work?", "Where is my order?"],
                       actions=[{"id": "callback", "type": "form", "label": "Get a call back",
                                 "fields": [{"key": "email", "label": "Email", "required": True}]}])
    fake_openai.enqueue(reply("Returns are free within **30 days**:\n\n- pack the item\n- print the label\n"
                              "- drop it at any post office\n\nSee the [returns policy](https://shop.example/returns)."))
    context = browser.new_context(viewport={"width": 900, "height": 720}, device_scale_factor=1)
    page = context.new_page()
    page.goto(host_site.put("/shot", host_page(api.base_url, str(agent))))
    open_widget(page, "Sparky")
    page.get_by_role("button", name="How do returns work?").click()
    page.wait_for_function("window.events.some(e => e[0] === 'agent-response')")
    page.get_by_role("textbox", name="Message to Sparky").fill("And exchanges?")
    target = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") == "1" else tmp_path / "widget.png"
    page.screenshot(path=str(target), animations="disabled", caret="hide")
    context.close()
    assert target.stat().st_size > 10_000



def test_the_demo_page_chats_with_agent_1_offline(page, api: RunningServer) -> None:  # type: ignore[no-untyped-def]
    """`make run`'s demo: the page is served by the service itself (its own origin), agent 1 answers
    from its FAQ without any provider."""
    page.goto(f"{api.base_url}/")
    assert page.url == f"{api.base_url}/demo"
    open_widget(page, "Sparky")
    page.get_by_role("button", name="When are you open?").click()
    page.get_by_role("log").get_by_text("We are open Monday to Friday, 9:00 to 17:00 CET.").wait_for()
    assert page.errors == []


def test_the_demo_page_keeps_the_conversation_across_a_reload(page, api: RunningServer) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{api.base_url}/demo")
    open_widget(page, "Sparky")
    page.get_by_role("button", name="When are you open?").click()
    answer = "We are open Monday to Friday, 9:00 to 17:00 CET."
    page.get_by_role("log").get_by_text(answer).wait_for()
    page.reload()
    open_widget(page, "Sparky")
    page.get_by_role("log").get_by_text(answer).wait_for(timeout=3000)
