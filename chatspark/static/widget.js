/* Chatspark chat widget: ChatSpark({ chatbotId, data }).render(selector).
 * One plain script, no dependencies, no build step. It talks to the service it was loaded from
 * (or `apiBase`) through /api/v1/widget/{agent}/... (session, chat, conversations/{id}/messages,
 * leads) with a visitor token kept in localStorage, and renders into an open shadow root.
 * Model output only ever becomes text nodes, or elements built here from a small Markdown subset:
 * never HTML, and links only when they are http(s). */
(function () {
  "use strict";
  if (window.ChatSpark && window.ChatSpark.__chatspark) return; // the script was included twice

  var EVENTS = ["user-message", "agent-response", "conversation-started", "lead-captured", "action-triggered"];
  var LEAD_FIELDS = ["name", "email", "phone", "companyName", "message"];
  var FIELD_TYPES = { text: 1, email: 1, tel: 1, url: 1, number: 1, textarea: 1 };
  var script = document.currentScript;
  var scriptOrigin = script && script.src ? new URL(script.src, location.href).origin : location.origin;
  var listeners = {};
  var memoryStorage = {}; // when localStorage is unavailable (sandboxed frames, some private modes)

  // ---- small helpers -----------------------------------------------------------------------

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var name in attrs) {
        var value = attrs[name];
        if (value === undefined || value === null || value === false) continue;
        if (name === "text") node.textContent = value;
        else if (name === "className") node.className = value;
        else if (name.slice(0, 2) === "on") node.addEventListener(name.slice(2), value);
        else node.setAttribute(name, value === true ? "" : value);
      }
    }
    (children || []).forEach(function (child) {
      if (child !== null && child !== undefined) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function svg(path) {
    var ns = "http://www.w3.org/2000/svg";
    var icon = document.createElementNS(ns, "svg");
    icon.setAttribute("viewBox", "0 0 24 24");
    icon.setAttribute("aria-hidden", "true");
    icon.setAttribute("focusable", "false");
    var shape = document.createElementNS(ns, "path");
    shape.setAttribute("d", path);
    icon.appendChild(shape);
    return icon;
  }

  /** The URL if it is absolute http(s), else null: `javascript:`, `data:` and friends never become links. */
  function safeUrl(value) {
    if (typeof value !== "string") return null;
    try {
      var url = new URL(value.trim());
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function storageGet(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (e) {
      return Object.prototype.hasOwnProperty.call(memoryStorage, key) ? memoryStorage[key] : null;
    }
  }

  function storageSet(key, value) {
    try {
      if (value === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch (e) {
      if (value === null) delete memoryStorage[key];
      else memoryStorage[key] = value;
    }
  }

  function emit(name, payload) {
    (listeners[name] || []).slice().forEach(function (handler) {
      try {
        handler(payload);
      } catch (error) {
        // A host page's handler must not break the widget; the error still reaches the console.
        if (window.reportError) window.reportError(error);
        else setTimeout(function () { throw error; });
      }
    });
  }

  function list(value) {
    return Array.isArray(value) ? value : [];
  }

  /** The agent's stored value wins; `data` fills in where the agent has none (as the API says). */
  function preferAgent(agentValue, dataValue) {
    if (Array.isArray(agentValue) ? agentValue.length : agentValue) return agentValue;
    return dataValue;
  }

  // ---- Markdown subset: paragraphs, lists, fenced code, `code`, **bold**, *italic*, links -----

  // Underscores stay literal (snake_case names are common in answers); a link target may hold one
  // level of parentheses, so `[x](javascript:alert(1))` is taken whole (and then refused).
  var INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\s][^*\n]*\*)|(\[[^\]\n]*\]\((?:[^()\s]|\([^()\s]*\))*\))|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/;

  function inline(text, parent) {
    while (text) {
      var match = INLINE.exec(text);
      if (!match) {
        parent.appendChild(document.createTextNode(text));
        return;
      }
      if (match.index) parent.appendChild(document.createTextNode(text.slice(0, match.index)));
      var token = match[0];
      if (match[1]) {
        parent.appendChild(el("code", { text: token.slice(1, -1) }));
      } else if (match[2]) {
        inline(token.slice(2, -2), parent.appendChild(el("strong")));
      } else if (match[3]) {
        inline(token.slice(1, -1), parent.appendChild(el("em")));
      } else if (match[4]) {
        var close = token.indexOf("](");
        var label = token.slice(1, close);
        var href = safeUrl(token.slice(close + 2, -1));
        if (href) parent.appendChild(link(href, label || href));
        else parent.appendChild(document.createTextNode(label)); // not http(s): the label as plain text
      } else {
        parent.appendChild(link(safeUrl(token) || "", token));
      }
      text = text.slice(match.index + token.length);
    }
  }

  function link(href, label) {
    if (!href) return document.createTextNode(label);
    return el("a", { href: href, target: "_blank", rel: "noopener noreferrer nofollow", text: label });
  }

  function markdown(source, parent) {
    var lines = String(source).replace(/\r\n?/g, "\n").split("\n");
    var i = 0;
    while (i < lines.length) {
      var line = lines[i];
      if (/^\s*```/.test(line)) {
        var code = [];
        for (i++; i < lines.length && !/^\s*```/.test(lines[i]); i++) code.push(lines[i]);
        i++;
        parent.appendChild(el("pre", null, [el("code", { text: code.join("\n") })]));
      } else if (/^\s*([-*+]|\d+[.)])\s+/.test(line)) {
        var ordered = /^\s*\d/.test(line);
        var items = parent.appendChild(el(ordered ? "ol" : "ul"));
        for (; i < lines.length && /^\s*([-*+]|\d+[.)])\s+/.test(lines[i]); i++) {
          inline(lines[i].replace(/^\s*([-*+]|\d+[.)])\s+/, ""), items.appendChild(el("li")));
        }
      } else if (!line.trim()) {
        i++;
      } else {
        var paragraph = parent.appendChild(el("p"));
        for (var first = true; i < lines.length && lines[i].trim() && !/^\s*(```|([-*+]|\d+[.)])\s+)/.test(lines[i]); i++) {
          if (!first) paragraph.appendChild(el("br"));
          inline(lines[i], paragraph);
          first = false;
        }
      }
    }
  }

  // ---- styles -------------------------------------------------------------------------------

  var STYLES = [
    ":host{all:initial}",
    "*{box-sizing:border-box}",
    ".root{--cs-primary:#2563eb;--cs-on-primary:#fff;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2328}",
    "button,textarea,input{font:inherit;color:inherit}",
    ":focus-visible{outline:3px solid #1f2328;outline-offset:2px;box-shadow:0 0 0 5px #fff}",
    ".launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;width:56px;height:56px;border-radius:50%;border:0;cursor:pointer;background:var(--cs-primary);color:var(--cs-on-primary);box-shadow:0 4px 14px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center}",
    ".launcher svg{width:28px;height:28px;fill:currentColor}",
    ".panel{position:fixed;right:20px;bottom:88px;z-index:2147483001;width:380px;max-width:calc(100vw - 40px);height:600px;max-height:calc(100vh - 108px);display:flex;flex-direction:column;background:#fff;border-radius:14px;box-shadow:0 8px 32px rgba(0,0,0,.25);overflow:hidden}",
    ".panel[hidden],[hidden]{display:none!important}",
    ".header{display:flex;align-items:center;gap:10px;padding:12px 14px;background:var(--cs-primary);color:var(--cs-on-primary)}",
    ".header img{width:32px;height:32px;border-radius:50%;object-fit:cover;background:#fff}",
    ".header h2{flex:1;margin:0;font-size:16px;font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}",
    ".icon-button{width:36px;height:36px;border:0;border-radius:8px;background:transparent;cursor:pointer;display:flex;align-items:center;justify-content:center;color:inherit}",
    ".icon-button svg{width:22px;height:22px;fill:currentColor}",
    ".log{flex:1;overflow-y:auto;padding:14px;display:flex;flex-direction:column;gap:10px;background:#fafafa}",
    ".message{max-width:85%;padding:9px 12px;border-radius:14px;overflow-wrap:anywhere}",
    ".message p{margin:0 0 6px}.message p:last-child{margin-bottom:0}",
    ".message ul,.message ol{margin:4px 0;padding-left:20px}",
    ".message pre{margin:6px 0;padding:8px;background:#e8eaed;border-radius:6px;overflow-x:auto;white-space:pre-wrap}",
    ".message code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px}",
    ".bot{align-self:flex-start;background:#eef0f3;border-bottom-left-radius:4px}",
    ".bot a{color:#0b57d0}",
    ".user{align-self:flex-end;background:var(--cs-primary);color:var(--cs-on-primary);border-bottom-right-radius:4px;white-space:pre-wrap}",
    ".notice{align-self:center;max-width:95%;font-size:13px;color:#3d434b;text-align:center}",
    ".error{align-self:stretch;background:#fdecea;color:#8a1c12;border-radius:8px;padding:8px 10px;font-size:14px}",
    ".sources{margin:8px 0 0;padding:6px 0 0;border-top:1px solid #d0d4da;font-size:13px;list-style:none}",
    ".sources-label{font-size:12px;color:#3d434b;margin-top:8px}",
    ".typing::after{content:'…';animation:cs-blink 1s infinite}",
    "@keyframes cs-blink{50%{opacity:.3}}",
    ".chips{display:flex;flex-wrap:wrap;gap:6px;padding:0 14px 10px;background:#fafafa}",
    ".chip{border:1px solid var(--cs-primary);background:#fff;border-radius:16px;padding:5px 12px;cursor:pointer;font-size:14px;text-align:left;text-decoration:none;color:#1f2328}",
    ".chip.primary{background:var(--cs-primary);color:var(--cs-on-primary)}",
    ".composer{display:flex;align-items:flex-end;gap:8px;padding:10px 12px;border-top:1px solid #d0d4da;background:#fff}",
    ".composer textarea{flex:1;resize:none;max-height:120px;min-height:40px;padding:9px 10px;border:1px solid #767d87;border-radius:10px;background:#fff}",
    ".send{width:40px;height:40px;border:0;border-radius:10px;background:var(--cs-primary);color:var(--cs-on-primary);cursor:pointer;display:flex;align-items:center;justify-content:center}",
    ".send svg{width:20px;height:20px;fill:currentColor}",
    ".send:disabled{opacity:.6;cursor:default}",
    ".form{flex:1;overflow-y:auto;padding:14px;display:flex;flex-direction:column;gap:10px}",
    ".form h3{margin:0;font-size:16px}",
    ".form label{display:flex;flex-direction:column;gap:4px;font-size:14px;font-weight:500}",
    ".form input,.form textarea{padding:8px 10px;border:1px solid #767d87;border-radius:8px;font-weight:400;background:#fff}",
    ".field-error{color:#8a1c12;font-size:13px;font-weight:400}",
    ".form-buttons{display:flex;gap:8px;justify-content:flex-end}",
    ".form-buttons button{padding:8px 14px;border-radius:8px;cursor:pointer;border:1px solid #767d87;background:#fff}",
    ".form-buttons button[type=submit]{background:var(--cs-primary);color:var(--cs-on-primary);border-color:var(--cs-primary)}",
    ".branding{margin:0;padding:4px;text-align:center;font-size:12px;color:#3d434b;background:#fff}",
    ".branding a{color:inherit}",
    ".visually-hidden{position:absolute;width:1px;height:1px;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
    "@media (max-width:480px){.panel{right:0;bottom:0;width:100vw;max-width:none;height:100%;max-height:none;border-radius:0}}",
    "@media (prefers-reduced-motion:reduce){.typing::after{animation:none}}",
  ].join("\n");

  var ICON_CHAT = "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z";
  var ICON_CLOSE = "M6.4 5 5 6.4 10.6 12 5 17.6 6.4 19l5.6-5.6 5.6 5.6 1.4-1.4-5.6-5.6L19 6.4 17.6 5 12 10.6z";
  var ICON_SEND = "M3 20.5 21 12 3 3.5v6.6l12 1.9-12 1.9z";

  /** Black or white text, whichever reads better on the given colour (WCAG relative luminance). */
  function textOn(rgb) {
    var parts = (rgb.match(/[\d.]+/g) || ["37", "99", "235"]).slice(0, 3).map(function (c) {
      c = Number(c) / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    var luminance = 0.2126 * parts[0] + 0.7152 * parts[1] + 0.0722 * parts[2];
    return (luminance + 0.05) / 0.05 > 1.05 / (luminance + 0.05) ? "#111111" : "#ffffff";
  }

  // ---- one widget ---------------------------------------------------------------------------

  function Widget(options) {
    options = options || {};
    if (options.chatbotId === undefined || options.chatbotId === null || String(options.chatbotId).trim() === "") {
      throw new TypeError("ChatSpark: chatbotId is required, e.g. ChatSpark({ chatbotId: \"1\" })");
    }
    this.chatbotId = String(options.chatbotId).trim();
    this.data = Object.assign({}, options.data || {});
    this.apiBase = String(options.apiBase || scriptOrigin).replace(/\/+$/, "");
    this.agentUrl = this.apiBase + "/api/v1/widget/" + encodeURIComponent(this.chatbotId);
    this.storageKey = "chatspark:" + this.apiBase + ":" + this.chatbotId.replace(/^ag_/, "") + ":";
    this.agent = null;
    this.token = null;
    this.conversationId = null;
    this.busy = false;
    this.messages = 0;
    window.chatSparkInstances[this.chatbotId] = this;
  }

  Widget.prototype.render = function (selector) {
    var self = this;
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", function () { self.render(selector); }, { once: true });
      return this;
    }
    var parent = selector && selector.nodeType === 1 ? selector : selector ? document.querySelector(selector) : null;
    if (!parent) {
      if (selector) console.warn("ChatSpark: no element matches " + selector + "; the widget goes into <body>");
      parent = document.body;
    }
    if (this.host) this.host.remove();
    this.host = el("div", { "data-chatspark": this.chatbotId, "data-state": "starting" });
    parent.appendChild(this.host);
    this.build(this.host.attachShadow({ mode: "open" }));
    this.start();
    return this;
  };

  Widget.prototype.build = function (shadow) {
    var self = this;
    if (shadow.adoptedStyleSheets !== undefined && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLES); // not inline <style>: pages with a strict style-src CSP keep working
      shadow.adoptedStyleSheets = [sheet];
    } else {
      shadow.appendChild(el("style", { text: STYLES }));
    }
    this.root = shadow.appendChild(el("div", { className: "root" }));
    this.launcher = el("button", {
      className: "launcher", type: "button", hidden: true, "aria-expanded": "false", "aria-controls": "cs-panel",
      "aria-label": "Open chat", onclick: function () { self.toggle(); },
    }, [svg(ICON_CHAT)]);
    this.avatar = el("img", { alt: "", hidden: true });
    this.title = el("h2", { id: "cs-title", text: "Chat" });
    this.log = el("div", { className: "log", role: "log", "aria-live": "polite", "aria-relevant": "additions", "aria-label": "Conversation", tabindex: "0" });
    this.chips = el("div", { className: "chips", hidden: true });
    this.input = el("textarea", { id: "cs-input", rows: "1", maxlength: "32000", placeholder: "Type your message…" });
    this.inputLabel = el("label", { for: "cs-input", className: "visually-hidden", text: "Message" });
    this.sendButton = el("button", { className: "send", type: "submit", "aria-label": "Send message" }, [svg(ICON_SEND)]);
    this.composer = el("form", { className: "composer", onsubmit: function (event) { event.preventDefault(); self.sendFromInput(); } },
      [this.inputLabel, this.input, this.sendButton]);
    this.formView = el("div", { className: "form", hidden: true });
    this.branding = el("p", { className: "branding", hidden: true }, ["Powered by ", el("a", { href: "https://chatspark.io", target: "_blank", rel: "noopener noreferrer", text: "Chatspark" })]);
    this.panel = el("div", { className: "panel", id: "cs-panel", role: "dialog", "aria-labelledby": "cs-title", hidden: true }, [
      el("div", { className: "header" }, [this.avatar, this.title, el("button", {
        className: "icon-button", type: "button", "aria-label": "Close chat", onclick: function () { self.close(); },
      }, [svg(ICON_CLOSE)])]),
      this.log, this.chips, this.formView, this.composer, this.branding,
    ]);
    this.input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        self.sendFromInput();
      }
    });
    this.input.addEventListener("input", function () { self.fitInput(); });
    this.root.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && !self.panel.hidden) {
        event.stopPropagation();
        self.close();
      }
    });
    this.root.appendChild(this.panel);
    this.root.appendChild(this.launcher);
  };

  // ---- opening and closing ------------------------------------------------------------------

  Widget.prototype.toggle = function () {
    if (this.panel.hidden) this.open();
    else this.close();
  };

  Widget.prototype.open = function () {
    if (!this.panel) return;
    this.panel.hidden = false;
    this.launcher.replaceChildren(svg(ICON_CLOSE));
    this.launcher.setAttribute("aria-expanded", "true");
    this.launcher.setAttribute("aria-label", "Close chat");
    this.scrollDown();
    (this.formView.hidden ? this.input : this.formView.querySelector("input,textarea") || this.input).focus();
  };

  Widget.prototype.close = function () {
    if (!this.panel || this.panel.hidden) return;
    this.panel.hidden = true;
    this.launcher.replaceChildren(svg(ICON_CHAT));
    this.launcher.setAttribute("aria-expanded", "false");
    this.launcher.setAttribute("aria-label", "Open chat with " + this.botName());
    this.launcher.focus();
  };

  Widget.prototype.botName = function () {
    return (this.agent && this.agent.botName) || "us";
  };

  // ---- talking to the service ---------------------------------------------------------------

  Widget.prototype.request = function (method, path, body) {
    var headers = body ? { "content-type": "application/json" } : {};
    if (this.token) headers["chatspark-visitor"] = this.token;
    return fetch(this.agentUrl + path, {
      method: method, headers: headers, body: body ? JSON.stringify(body) : undefined,
      credentials: "omit", mode: "cors", cache: "no-store",
    });
  };

  /** POST …/session: a visitor token (kept per agent and per verified user) and the agent's public fields. */
  Widget.prototype.session = function () {
    var self = this;
    var userId = this.data.userId ? String(this.data.userId) : "";
    var body = {};
    var stored = storageGet(this.storageKey + "visitor");
    var saved = null;
    try {
      saved = stored ? JSON.parse(stored) : null;
    } catch (e) {
      saved = null;
    }
    // A token of another signed-in user (or of one who signed out) is not reused on this page.
    if (saved && saved.token && (saved.userId || "") === userId) body.visitorToken = saved.token;
    if (userId) {
      body.userId = userId;
      if (this.data.hash) body.hash = String(this.data.hash);
    }
    this.token = null;
    return this.request("POST", "/session", body).then(function (response) {
      if (!response.ok) return readError(response).then(function (problem) { throw problem; });
      return response.json();
    }).then(function (answer) {
      self.token = answer.visitorToken;
      self.agent = answer.agent || {};
      var sameVisitor = saved && saved.visitorId === answer.visitorId;
      storageSet(self.storageKey + "visitor", JSON.stringify({ token: answer.visitorToken, visitorId: answer.visitorId, userId: userId }));
      if (!sameVisitor) self.setConversation(null);
      return answer;
    });
  };

  Widget.prototype.start = function () {
    var self = this;
    this.conversationId = storageGet(this.storageKey + "conversation");
    return this.session().then(function () {
      self.theme();
      self.host.setAttribute("data-state", "ready");
      self.launcher.hidden = false;
      return self.restore();
    }).catch(function (problem) {
      self.host.setAttribute("data-state", "refused");
      self.panel.hidden = self.launcher.hidden = true; // also after updateProps with a refused identity
      // A refused origin gets no CORS grant, so the browser shows no status: only a failed fetch.
      var hint = problem.status ? "" : " Is " + location.origin + " in the agent's allowedOrigins?";
      console.error("ChatSpark: no chat session for agent " + self.chatbotId + " at " + self.apiBase + " (" +
        describe(problem) + ")." + hint);
    });
  };

  /** The stored conversation (after a reload), else the welcome message and suggested prompts. */
  Widget.prototype.restore = function () {
    var self = this;
    this.log.textContent = "";
    this.messages = 0;
    var welcome = preferAgent(this.agent.welcomeMessage, this.data.welcomeMessage);
    if (welcome) this.addMessage("bot", String(welcome), { welcome: true });
    this.renderChips();
    if (!this.conversationId) return Promise.resolve();
    var rows = [];
    var page = function (cursor, left) {
      var query = "?limit=100" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
      return self.request("GET", "/conversations/" + encodeURIComponent(self.conversationId) + "/messages" + query)
        .then(function (response) {
          if (!response.ok) return readError(response).then(function (problem) { throw problem; });
          return response.json();
        }).then(function (answer) {
          rows = rows.concat(list(answer.messages));
          return answer.nextCursor && left > 1 ? page(answer.nextCursor, left - 1) : rows;
        });
    };
    return page(null, 20).then(function (all) {
      all.forEach(function (row) {
        if (row.role === "user") self.addMessage("user", String(row.content || ""));
        else self.addMessage("bot", String(row.content || ""), { sources: row.sources });
      });
      self.renderChips();
      self.scrollDown();
    }).catch(function (problem) {
      // Expired, deleted, or another visitor's: start afresh rather than show an error.
      if (problem.status === 404 || problem.status === 401) self.setConversation(null);
      else console.warn("ChatSpark: could not load the conversation (" + describe(problem) + ")");
    });
  };

  Widget.prototype.setConversation = function (id) {
    this.conversationId = id || null;
    storageSet(this.storageKey + "conversation", this.conversationId);
  };

  Widget.prototype.theme = function () {
    var agent = this.agent;
    var name = agent.botName || "Chat";
    this.title.textContent = name;
    this.inputLabel.textContent = "Message to " + name;
    this.launcher.setAttribute("aria-label", this.panel.hidden ? "Open chat with " + name : "Close chat");
    var avatar = safeUrl(agent.botAvatar);
    this.avatar.hidden = !avatar;
    if (avatar) this.avatar.src = avatar;
    else this.avatar.removeAttribute("src");
    var color = typeof agent.primaryColor === "string" && window.CSS && CSS.supports("color", agent.primaryColor) ? agent.primaryColor : "";
    if (color) {
      this.root.style.setProperty("--cs-primary", color);
      var probe = this.root.appendChild(el("span", { hidden: true }));
      probe.style.color = color;
      this.root.style.setProperty("--cs-on-primary", textOn(getComputedStyle(probe).color));
      probe.remove();
    }
    this.branding.hidden = !!agent.removeBranding;
  };

  // ---- the conversation ---------------------------------------------------------------------

  Widget.prototype.addMessage = function (kind, text, options) {
    options = options || {};
    var bubble = el("div", { className: "message " + kind });
    if (kind === "user") bubble.textContent = text;
    else markdown(text, bubble);
    if (options.sources) this.addSources(bubble, options.sources);
    this.log.appendChild(bubble);
    if (!options.welcome && kind !== "notice" && kind !== "error") this.messages++;
    this.scrollDown();
    return bubble;
  };

  Widget.prototype.addSources = function (bubble, sources) {
    var seen = {};
    var items = list(sources).map(function (source) {
      if (!source || typeof source !== "object") return null;
      var href = safeUrl(source.url);
      var label = String(source.title || source.url || source.source || "");
      if (!label || seen[href || label]) return null;
      seen[href || label] = true;
      return el("li", null, [href ? link(href, label) : label]);
    }).filter(Boolean);
    if (!items.length) return;
    bubble.appendChild(el("div", { className: "sources-label", text: "Sources" }));
    bubble.appendChild(el("ul", { className: "sources", "aria-label": "Sources" }, items));
  };

  Widget.prototype.renderChips = function () {
    var self = this;
    this.chips.textContent = "";
    var actions = list(preferAgent(this.agent && this.agent.actions, this.data.actions));
    var prompts = this.messages ? [] : list(preferAgent(this.agent && this.agent.suggestedMessages, this.data.suggestedMessage || this.data.suggestedMessages));
    prompts.forEach(function (prompt) {
      if (typeof prompt !== "string" || !prompt.trim()) return;
      self.chips.appendChild(el("button", { className: "chip", type: "button", text: prompt, onclick: function () { self.send(prompt); } }));
    });
    actions.forEach(function (action) {
      if (!action || !action.label || !action.type) return;
      var className = "chip action" + (action.primary ? " primary" : "");
      if (action.type === "link") {
        var href = safeUrl(action.url);
        if (!href) return; // only http(s) targets become links
        self.chips.appendChild(el("a", {
          className: className, href: href, target: "_blank", rel: "noopener noreferrer", text: String(action.label),
          "data-action": action.id, onclick: function () {
            emit("action-triggered", { actionId: action.id, actionType: "link", data: { url: href, label: action.label } });
          },
        }));
        return;
      }
      self.chips.appendChild(el("button", {
        className: className, type: "button", text: String(action.label),
        "data-action": action.id, onclick: function () { self.runAction(action); },
      }));
    });
    this.chips.hidden = !this.chips.childNodes.length;
  };

  Widget.prototype.scrollDown = function () {
    this.log.scrollTop = this.log.scrollHeight;
  };

  Widget.prototype.fitInput = function () {
    this.input.style.height = "auto";
    this.input.style.height = Math.min(this.input.scrollHeight + 2, 120) + "px";
  };

  Widget.prototype.sendFromInput = function () {
    var text = this.input.value;
    if (!text.trim() || this.busy) return;
    this.input.value = "";
    this.fitInput();
    this.send(text);
  };

  /** One turn: POST …/chat with stream: true, the answer shown token by token as frames arrive. */
  Widget.prototype.send = function (text, retried) { // retried: the visitor's bubble of the first try
    var self = this;
    text = String(text);
    if (!text.trim() || this.busy) return Promise.resolve();
    this.busy = true;
    this.sendButton.disabled = true;
    var mine = retried || this.addMessage("user", text);
    var giveBack = function () { // the service never took it: back into the box, not lost
      mine.remove();
      self.messages--;
      if (!self.input.value) {
        self.input.value = text;
        self.fitInput();
      }
      self.renderChips();
    };
    this.renderChips();
    var bubble = this.log.appendChild(el("div", { className: "message bot typing", "aria-busy": "true" }));
    bubble.appendChild(el("span", { className: "visually-hidden", text: this.botName() + " is typing" }));
    this.scrollDown();
    var answer = "";
    var announced = false;
    var finished = false;
    var started = !this.conversationId;
    var handedOver = false; // to the one retry below, which then owns `busy`
    var accepted = function (conversationId) {
      if (announced || !conversationId) return;
      announced = true;
      if (started || conversationId !== self.conversationId) {
        self.setConversation(conversationId);
        emit("conversation-started", { conversationId: conversationId });
      }
      emit("user-message", { message: text, conversationId: conversationId });
    };
    var body = { message: text, stream: true };
    if (this.conversationId) body.conversationId = this.conversationId;
    return this.request("POST", "/chat", body).then(function (response) {
      if (!response.ok) return readError(response).then(function (problem) { throw problem; });
      if (!response.body || !/event-stream/.test(response.headers.get("content-type") || "")) {
        return response.json().then(function (whole) {
          accepted(whole.conversationId);
          answer = String(whole.text || "");
          finished = true;
          return { messageId: whole.messageId, sources: whole.sources, conversationId: whole.conversationId };
        });
      }
      return readEvents(response.body, function (frame) {
        if (frame.conversationId) accepted(frame.conversationId);
        if (frame.error) {
          var problem = new Error(frame.error.message || "the answer stopped");
          problem.code = frame.error.code;
          problem.midStream = true;
          throw problem;
        }
        if (typeof frame.delta === "string" && frame.delta) {
          if (!answer) bubble.className = "message bot";
          answer += frame.delta;
          bubble.textContent = "";
          markdown(answer, bubble);
          self.scrollDown();
        }
        if (frame.done) finished = frame;
      }).then(function () {
        if (!finished) {
          var problem = new Error("the stream ended early");
          problem.midStream = true;
          throw problem;
        }
        return finished;
      });
    }).then(function (done) {
      bubble.className = "message bot";
      bubble.removeAttribute("aria-busy");
      bubble.textContent = "";
      markdown(answer, bubble);
      self.addSources(bubble, done.sources);
      self.messages++;
      var conversationId = done.conversationId || self.conversationId;
      emit("agent-response", { message: answer, conversationId: conversationId, messageId: done.messageId || null });
    }).catch(function (problem) {
      bubble.remove();
      // An expired conversation or a visitor token the service no longer takes: once, afresh.
      if (!retried && !announced && (problem.status === 404 || problem.status === 401)) {
        var renew = problem.status === 401 ? self.session() : Promise.resolve();
        self.setConversation(null);
        return renew.then(function () {
          handedOver = true;
          self.busy = false;
          return self.send(text, mine);
        }, function (again) {
          giveBack();
          self.showError(again);
        });
      }
      if (answer) self.addMessage("bot", answer);
      else if (!announced) giveBack();
      self.showError(problem);
    }).then(function () {
      if (handedOver) return;
      self.busy = false;
      self.sendButton.disabled = false;
      self.scrollDown();
    });
  };

  Widget.prototype.showError = function (problem) {
    this.log.appendChild(el("div", { className: "message error", role: "alert", text: readable(problem) }));
    this.scrollDown();
  };

  // ---- actions: button, link, form ----------------------------------------------------------

  Widget.prototype.runAction = function (action) {
    if (action.type === "form") this.showForm(action);
    else emit("action-triggered", { actionId: action.id, actionType: action.type, data: { label: action.label } });
  };

  Widget.prototype.showForm = function (action) {
    var self = this;
    var fields = list(action.fields).filter(function (field) { return field && field.key; });
    var prefill = { name: this.data.name, email: this.data.email };
    var controls = {};
    var errors = {};
    var form = el("form", { novalidate: true, "aria-labelledby": "cs-form-title" });
    form.appendChild(el("h3", { id: "cs-form-title", text: String(action.label || "Contact us") }));
    fields.forEach(function (field, index) {
      var key = String(field.key);
      // "text" is the service's default type: a lead field's key then says more.
      var type = FIELD_TYPES[field.type] && field.type !== "text" ? field.type :
        key === "email" ? "email" : key === "phone" ? "tel" : key === "message" ? "textarea" : "text";
      var id = "cs-field-" + index;
      var control = type === "textarea" ? el("textarea", { id: id, rows: "3" }) : el("input", { id: id, type: type });
      control.name = key;
      if (field.required) control.required = true;
      if (type === "email") control.autocomplete = "email";
      if (key === "name") control.autocomplete = "name";
      if (key === "phone") control.autocomplete = "tel";
      if (prefill[key]) control.value = String(prefill[key]);
      errors[key] = el("span", { className: "field-error", id: id + "-error", hidden: true });
      control.setAttribute("aria-describedby", id + "-error");
      controls[key] = control;
      form.appendChild(el("label", { for: id }, [String(field.label || key) + (field.required ? " (required)" : ""), control, errors[key]]));
    });
    var status = el("p", { className: "field-error", role: "alert" });
    var submit = el("button", { type: "submit", text: "Send" });
    form.appendChild(status);
    form.appendChild(el("div", { className: "form-buttons" }, [
      el("button", { type: "button", text: "Cancel", onclick: function () { self.hideForm(); } }), submit,
    ]));
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var values = {};
      var bad = null;
      Object.keys(controls).forEach(function (key) {
        var control = controls[key];
        values[key] = control.value.trim();
        var message = control.required && !values[key] ? "Please fill this in." :
          values[key] && !control.checkValidity() ? "Please check this value." : "";
        errors[key].textContent = message;
        errors[key].hidden = !message;
        control.setAttribute("aria-invalid", message ? "true" : "false");
        if (message && !bad) bad = control;
      });
      if (bad) return bad.focus();
      submit.disabled = true;
      status.textContent = "";
      self.submitForm(action, values).then(function (lead) {
        self.hideForm();
        emit("action-triggered", { actionId: action.id, actionType: "form", data: values });
        if (lead) {
          emit("lead-captured", {
            name: lead.name || null, email: lead.email || null, phone: lead.phone || null,
            companyName: lead.companyName || null, message: lead.message || null,
          });
        }
        self.addMessage("notice", "Thanks! We received your details.");
      }, function (problem) {
        submit.disabled = false;
        var fieldsWrong = problem.details && problem.details.fields;
        Object.keys(fieldsWrong || {}).forEach(function (key) {
          if (!errors[key]) return;
          errors[key].textContent = list(fieldsWrong[key]).join(" ") || "Please check this value.";
          errors[key].hidden = false;
        });
        status.textContent = readable(problem);
      });
    });
    this.formView.textContent = "";
    this.formView.appendChild(form);
    this.formView.hidden = false;
    this.log.hidden = this.chips.hidden = this.composer.hidden = true;
    (form.querySelector("input,textarea") || submit).focus();
  };

  Widget.prototype.hideForm = function () {
    this.formView.hidden = true;
    this.formView.textContent = "";
    this.log.hidden = this.composer.hidden = false;
    this.renderChips();
    this.input.focus();
  };

  /** A form with lead fields becomes a lead (POST …/leads); any other form only tells the host page. */
  Widget.prototype.submitForm = function (action, values) {
    var lead = {};
    var any = false;
    LEAD_FIELDS.forEach(function (key) {
      if (Object.prototype.hasOwnProperty.call(values, key)) {
        any = true;
        if (values[key]) lead[key] = values[key];
      }
    });
    if (!any) return Promise.resolve(null);
    if (this.conversationId) lead.conversationId = this.conversationId;
    return this.request("POST", "/leads", lead).then(function (response) {
      if (!response.ok) return readError(response).then(function (problem) { throw problem; });
      return response.json().then(function (answer) { return answer.lead || lead; });
    });
  };

  // ---- host page API ------------------------------------------------------------------------

  /** New `data` (merged into the old): a changed user id or hash starts a new session for that user. */
  Widget.prototype.updateProps = function (props) {
    var next = Object.assign({}, this.data, (props && props.data) || {});
    var identityChanged = (next.userId || "") !== (this.data.userId || "") || (next.hash || "") !== (this.data.hash || "");
    this.data = next;
    if (!this.host) return this;
    if (identityChanged) {
      this.start();
    } else if (this.agent && !this.messages) {
      this.restore();
    } else if (this.agent) {
      this.renderChips();
    }
    return this;
  };

  Widget.prototype.destroy = function () {
    if (this.host) this.host.remove();
    this.host = this.panel = null;
    if (window.chatSparkInstances[this.chatbotId] === this) delete window.chatSparkInstances[this.chatbotId];
  };

  // ---- reading answers ----------------------------------------------------------------------

  /** Server-sent events from a fetch body, each `data:` JSON handed to onFrame as it arrives. */
  function readEvents(stream, onFrame) {
    var reader = stream.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    var data = [];
    var over = false;
    var line = function (text) {
      if (text === "") {
        if (!data.length) return;
        var payload = data.join("\n");
        data = [];
        if (payload === "[DONE]") {
          over = true;
          return;
        }
        var frame;
        try {
          frame = JSON.parse(payload);
        } catch (e) {
          return; // not ours to understand; the spec says ignore
        }
        onFrame(frame);
      } else if (text.charAt(0) !== ":" && text.slice(0, 5) === "data:") {
        data.push(text.slice(5).replace(/^ /, ""));
      } // id:, event:, retry: and comments (pings) carry nothing the widget needs
    };
    var pump = function () {
      return reader.read().then(function (chunk) {
        if (chunk.done) {
          line("");
          return;
        }
        buffer += decoder.decode(chunk.value, { stream: true });
        var lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop();
        for (var i = 0; i < lines.length && !over; i++) line(lines[i]);
        if (over) return reader.cancel().catch(function () {});
        return pump();
      });
    };
    return pump().catch(function (problem) {
      reader.cancel().catch(function () {});
      throw problem;
    });
  }

  function readError(response) {
    return response.json().catch(function () { return {}; }).then(function (body) {
      var error = (body && body.error) || {};
      var problem = new Error(error.message || "HTTP " + response.status);
      problem.status = response.status;
      problem.code = error.code;
      problem.details = error.details;
      problem.retryAfter = Number(response.headers.get("retry-after")) || 0;
      return problem;
    });
  }

  function describe(problem) {
    return problem.status ? problem.status + " " + (problem.code || "") + ": " + problem.message : String(problem.message || problem);
  }

  /** What the visitor reads: the situation in plain words, never a stack or a raw code. */
  function readable(problem) {
    var status = problem.status;
    if (status === 429) {
      var wait = problem.retryAfter;
      return "You're sending messages too quickly. Please wait " + (wait ? wait + (wait === 1 ? " second" : " seconds") : "a moment") + " and try again.";
    }
    if (status === 402) return "This chat has reached its limit for this month. Please try again later or contact us another way.";
    if (status === 403) return "This chat isn't available here right now.";
    if (status === 409) return "Still answering your previous message. Please try again in a moment.";
    if (status === 400) return problem.details && problem.details.fields ? "Please check the highlighted fields." : "That message couldn't be sent: " + problem.message;
    if (status === 413) return "That message is too long.";
    if (problem.midStream) return "The answer was interrupted. Please try again.";
    if (status) return "Something went wrong on our side. Please try again.";
    return "Couldn't reach the chat service. Please check your connection and try again.";
  }

  // ---- the global -----------------------------------------------------------------------------

  function ChatSpark(options) {
    return new Widget(options);
  }

  ChatSpark.__chatspark = true;
  ChatSpark.on = function (name, handler) {
    if (EVENTS.indexOf(name) < 0) console.warn("ChatSpark: unknown event " + name + "; known: " + EVENTS.join(", "));
    if (typeof handler !== "function") throw new TypeError("ChatSpark.on: the handler must be a function");
    (listeners[name] = listeners[name] || []).push(handler);
    return ChatSpark;
  };
  ChatSpark.off = function (name, handler) {
    if (!listeners[name]) return ChatSpark;
    listeners[name] = handler ? listeners[name].filter(function (h) { return h !== handler; }) : [];
    return ChatSpark;
  };

  window.chatSparkInstances = window.chatSparkInstances || {};
  window.ChatSpark = ChatSpark;
})();
