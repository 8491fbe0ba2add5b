// carerisk practitioner pages. Every number shown comes from the audited API under /v1; the
// API key lives in this tab's sessionStorage and travels only in the Authorization header.
"use strict";

(() => {
  const API = "/v1";
  const SESSION = "carerisk.session";
  const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{5,63}$/;
  const SVG = "http://www.w3.org/2000/svg";

  // --- session ------------------------------------------------------------------------------

  function readSession() {
    try {
      const value = JSON.parse(sessionStorage.getItem(SESSION) || "null");
      return value && typeof value.key === "string" ? value : null;
    } catch (_) {
      return null;
    }
  }

  function saveSession(value) {
    sessionStorage.setItem(SESSION, JSON.stringify(value));
  }

  function signOut() {
    sessionStorage.removeItem(SESSION);
    window.location.assign("/ui/");
  }

  function sessionOrSignIn() {
    const session = readSession();
    if (!session) {
      window.location.replace("/ui/");
      return null;
    }
    return session;
  }

  // --- talking to the API -------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, detail) {
      super(message);
      this.status = status;
      this.code = code;
      this.detail = detail || {};
    }
  }

  async function call(key, path, { method = "GET", body = undefined, as = "json" } = {}) {
    const headers = { Authorization: `Bearer ${key}`, Accept: as === "json" ? "application/json" : "text/csv" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(API + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
        referrerPolicy: "no-referrer",
      });
    } catch (_) {
      throw new ApiError(0, "unreachable", "");
    }
    if (!response.ok) {
      let detail = {};
      try {
        detail = await response.json();
      } catch (_) {
        detail = {};
      }
      throw new ApiError(response.status, String(detail.error || ""), String(detail.message || ""), detail);
    }
    return as === "text" ? response.text() : response.json();
  }

  // The outcomes served (GET /v1/outcomes: name, title, cohort, horizon, band labels), asked
  // for once per page; the pages spell no outcome or band of their own.
  let served = null;

  function servedOutcomes(key) {
    if (!served) {
      served = call(key, "/outcomes").then((answer) => answer.outcomes);
      served.catch(() => { served = null; });
    }
    return served;
  }

  function outcomeTitle(outcomes, name) {
    const found = outcomes.find((o) => o.name === name);
    return found ? `${found.title} in the next ${found.horizon_months} months` : name;
  }

  // Plain words for every refusal; never the raw body or a stack trace.
  function plainError(error, personId) {
    if (!(error instanceof ApiError)) {
      return "Something went wrong in this page. Reload it and try again.";
    }
    const message = error.message.toLowerCase();
    switch (error.status) {
      case 0:
        return "The carerisk service cannot be reached just now. Check your connection, or try again in a few minutes.";
      case 401:
        if (message.includes("expired")) {
          return "Your API key has expired. Ask your administrator for a new key, then sign in again.";
        }
        if (message.includes("revoked")) {
          return "Your API key has been withdrawn. Ask your administrator for a new key, then sign in again.";
        }
        return "That API key was not recognised. Check it and sign in again.";
      case 403:
        if (error.code === "not_shared") return sentence(error.message);
        return "Your role may not see this. Ask your administrator if you need access.";
      case 404:
        return personId
          ? `No one with the id ${personId} is in the latest data. Check the id and try again.`
          : "That was not found.";
      case 413:
        return "That asks for too many people at once.";
      case 422:
        if (error.code === "invalid_request") {
          return personId !== undefined
            ? "That does not look like a pseudonymised id: use 6 to 64 letters, digits, - or _, starting with a letter or digit."
            : "Some of the choices do not fit. Check them and try again.";
        }
        return error.detail.message ? sentence(error.detail.message) : "Some of the choices do not fit.";
      case 429:
        return "Too many requests in a short time. Wait a few seconds and try again.";
      case 451:
        return "This person has objected to their data being used for risk stratification, so no score is shown.";
      case 503:
        if (error.code === "audit_unavailable") {
          return "The service is unavailable: the audit trail cannot be written, so no score can be shown. Try again later.";
        }
        return "The service is unavailable just now. Try again in a few minutes.";
      default:
        return "The service could not answer. Try again; if it keeps happening, tell your administrator.";
    }
  }

  function capitalised(text) {
    const trimmed = String(text).trim();
    return trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  }

  function sentence(text) {
    const first = capitalised(text);
    return /[.!?]$/.test(first) ? first : `${first}.`;
  }

  // --- small DOM helpers --------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null) continue;
      if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function showStatus(text, kind = "error") {
    const box = document.getElementById("status");
    if (!box) return;
    box.hidden = !text;
    box.className = kind === "error" ? "status" : "status info";
    box.textContent = text || "";
  }

  // A refused key ends the session: say why and offer the sign-in page.
  function handleError(error, personId) {
    const text = plainError(error, personId);
    if (error instanceof ApiError && error.status === 401) {
      sessionStorage.removeItem(SESSION);
      showStatus(text);
      const box = document.getElementById("status");
      box.append(" ", el("a", { href: "/ui/", text: "Sign in again" }));
      return;
    }
    showStatus(text);
  }

  function percent(probability) {
    return `${(probability * 100).toFixed(1)}%`;
  }

  function bandBadge(band) {
    return el("span", { className: `band band-${band.replace(/\s+/g, "-")}`, text: band, "data-band": band });
  }

  function showActingAs(session) {
    const box = document.getElementById("acting-as");
    if (box) {
      box.replaceChildren(
        "Acting as ",
        el("strong", { text: session.org, "data-org": session.org }),
        " · role ",
        el("strong", { text: session.role, "data-role": session.role }),
      );
    }
    for (const link of document.querySelectorAll("nav [data-roles]")) {
      link.hidden = !link.dataset.roles.split(" ").includes(session.role);
    }
    const button = document.getElementById("sign-out");
    if (button) button.addEventListener("click", signOut);
  }

  // --- sign in ------------------------------------------------------------------------------

  function initSignIn() {
    const form = document.getElementById("signin-form");
    const input = document.getElementById("api-key");
    const current = readSession();
    if (current) {
      const box = document.getElementById("signed-in");
      box.hidden = false;
      box.replaceChildren(
        `You are signed in as ${current.org} (${current.role}). `,
        el("a", { href: landing(current.role, current.sharing), text: "Continue" }),
        " or sign in with another key.",
      );
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) {
        showStatus("Enter your API key.");
        input.focus();
        return;
      }
      const button = form.querySelector("button");
      button.disabled = true;
      try {
        const who = await call(key, "/whoami");
        const sharing = await fireSharing(key, who.role);
        saveSession({ key, org: who.org, role: who.role, keyId: who.key_id, sharing });
        input.value = "";
        window.location.assign(landing(who.role, sharing));
      } catch (error) {
        sessionStorage.removeItem(SESSION);
        showStatus(plainError(error));
        input.focus();
      } finally {
        button.disabled = false;
      }
    });
  }

  // The fire role lands on its referral queue, or on the register where the area shares it.
  function landing(role, sharing) {
    if (role !== "fire") return "/ui/person";
    return sharing === "register" ? "/ui/register" : "/ui/referrals";
  }

  async function fireSharing(key, role) {
    if (role !== "fire") return null;
    try {
      return (await call(key, "/referrals?limit=1")).sharing;
    } catch (_) {
      return null;
    }
  }

  // --- person view --------------------------------------------------------------------------

  function initPerson() {
    const session = sessionOrSignIn();
    if (!session) return;
    showActingAs(session);
    const form = document.getElementById("person-form");
    const input = document.getElementById("person-id");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      lookUp(session, input.value.trim());
    });
    // a link from the register carries the id in the fragment, which never leaves the browser
    const fromLink = decodeURIComponent(window.location.hash.slice(1));
    if (ID_PATTERN.test(fromLink)) {
      input.value = fromLink;
      lookUp(session, fromLink);
    }
  }

  async function lookUp(session, personId) {
    const result = document.getElementById("result");
    result.replaceChildren();
    if (!personId) {
      showStatus("Enter a pseudonymised person id.");
      return;
    }
    if (!ID_PATTERN.test(personId)) {
      showStatus(plainError(new ApiError(422, "invalid_request", ""), personId));
      return;
    }
    showStatus("Looking up…", "info");
    try {
      const answer = await call(session.key, "/person", { method: "POST", body: { person_id: personId } });
      const outcomes = await servedOutcomes(session.key);
      showStatus("");
      result.replaceChildren(renderPerson(answer, outcomes));
      // other scripts (referrals.js) add to the person view
      document.dispatchEvent(new CustomEvent("carerisk:person", { detail: { session, answer, outcomes } }));
    } catch (error) {
      handleError(error, personId);
    }
  }

  function renderPerson(answer, outcomes) {
    const wrap = el("section", { "aria-labelledby": "person-title", "data-person": answer.person_id });
    wrap.append(el("h2", { id: "person-title", text: `Person ${answer.person_id}` }));
    const notes = new Set();
    const cards = el("div", { className: "outcomes" });
    for (const [outcome, score] of Object.entries(answer.outcomes)) {
      cards.append(renderOutcome(outcome, outcomeTitle(outcomes, outcome), score));
      for (const note of score.notes || []) notes.add(note);
    }
    for (const note of notes) wrap.append(el("p", { className: "note", role: "note", text: note }));
    wrap.append(cards);
    return wrap;
  }

  function renderOutcome(outcome, title, score) {
    const titleId = `title-${outcome}`;
    const card = el("article", { className: "outcome", "data-outcome": outcome, "aria-labelledby": titleId });
    card.append(el("h3", { id: titleId, text: title }));
    if (score.error) {
      card.append(el("p", { className: "empty", text: sentence(score.message || "This model does not apply to this person.") }));
      return card;
    }
    const facts = el("dl", { className: "facts" });
    if (typeof score.probability === "number") {
      facts.append(
        el("dt", { text: "Risk" }),
        el("dd", {},
          el("span", {
            className: "risk",
            "data-probability": String(score.probability),
            title: `calibrated probability ${score.probability}`,
            text: percent(score.probability),
          }),
          " chance in 12 months",
        ),
      );
    }
    facts.append(el("dt", { text: "Band" }), el("dd", {}, bandBadge(score.band)));
    if (score.rank) facts.append(el("dt", { text: "Rank" }), el("dd", { text: String(score.rank) }));
    facts.append(
      el("dt", { text: "Data as at" }),
      el("dd", { "data-index-date": score.index_date, text: score.index_date }),
      el("dt", { text: "Model" }),
      el("dd", { "data-model-version": score.model_version, text: `${score.model_name} version ${score.model_version}` }),
    );
    card.append(facts);
    card.append(renderReasons(outcome, score.reasons || []));
    return card;
  }

  // A bar chart in words: modifiable reasons that raise risk first, under "What could be acted on".
  function renderReasons(outcome, reasons) {
    const box = el("div", { className: "reasons-box" });
    const actOn = reasons.filter((r) => r.modifiable && r.direction === "raises");
    const others = reasons.filter((r) => !(r.modifiable && r.direction === "raises"));
    const scale = Math.max(1e-9, ...reasons.map((r) => Math.abs(r.contribution)));
    const actId = `act-${outcome}`;
    const otherId = `other-${outcome}`;
    box.append(el("h4", { id: actId, text: "What could be acted on" }));
    box.append(actOn.length ? reasonList(actOn, scale, actId) : el("p", { className: "empty", text: "Nothing among the top reasons." }));
    box.append(el("h4", { id: otherId, text: "Other reasons" }));
    box.append(others.length ? reasonList(others, scale, otherId) : el("p", { className: "empty", text: "None." }));
    box.append(el("p", { className: "hint", text: "Bars show how much each reason moves this person's risk compared with the average person; red raises it, blue lowers it." }));
    return box;
  }

  function reasonList(reasons, scale, labelledBy) {
    const list = el("ol", { className: "reasons", "aria-labelledby": labelledBy });
    for (const reason of reasons) {
      const text = el("span", { className: "reason-text", text: reason.label });
      if (reason.modifiable) text.append(el("span", { className: "tag", text: "modifiable" }));
      const effect = reason.direction === "raises" ? "raises risk" : "lowers risk";
      list.append(
        el("li", {
          className: "reason",
          "data-feature": reason.feature,
          "data-contribution": String(reason.contribution),
          "data-modifiable": String(reason.modifiable),
        },
        text,
        bar(reason.contribution, scale),
        el("span", { className: "effect", text: `${effect} (${reason.contribution >= 0 ? "+" : "−"}${Math.abs(reason.contribution).toFixed(2)} on the log-odds scale)` }),
        ),
      );
    }
    return list;
  }

  function bar(contribution, scale) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 200 20");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const half = 100 * Math.min(1, Math.abs(contribution) / scale);
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("x", String(contribution >= 0 ? 100 : 100 - half));
    rect.setAttribute("y", "3");
    rect.setAttribute("width", String(Math.max(1, half)));
    rect.setAttribute("height", "14");
    rect.setAttribute("class", contribution >= 0 ? "bar-raises" : "bar-lowers");
    const axis = document.createElementNS(SVG, "line");
    axis.setAttribute("x1", "100");
    axis.setAttribute("x2", "100");
    axis.setAttribute("y1", "0");
    axis.setAttribute("y2", "20");
    axis.setAttribute("class", "axis");
    svg.append(rect, axis);
    return svg;
  }

  // --- register view ------------------------------------------------------------------------

  function initRegister() {
    const session = sessionOrSignIn();
    if (!session) return;
    showActingAs(session);
    const state = { session, people: [], query: null, outcomes: [] };
    state.ready = fillOutcomes(state);
    document.getElementById("register-form").addEventListener("submit", (event) => {
      event.preventDefault();
      loadRegister(state);
    });
    document.getElementById("band-filter").addEventListener("change", () => renderRows(state));
    document.getElementById("text-filter").addEventListener("input", () => renderRows(state));
    document.getElementById("download").addEventListener("click", () => download(state));
  }

  async function fillOutcomes(state) {
    try {
      state.outcomes = await servedOutcomes(state.session.key);
    } catch (error) {
      handleError(error);
      return;
    }
    const select = document.getElementById("outcome");
    select.replaceChildren(...state.outcomes.map((o) => el("option", { value: o.name, text: o.title })));
    const showCohort = () => {
      const chosen = state.outcomes.find((o) => o.name === select.value);
      document.getElementById("outcome-hint").textContent = chosen ? `For people ${chosen.cohort}.` : "";
    };
    select.addEventListener("change", showCohort);
    showCohort();
  }

  function fillBands(state, name) {
    const chosen = state.outcomes.find((o) => o.name === name);
    const filter = document.getElementById("band-filter");
    const kept = filter.value;
    const labels = chosen ? [...chosen.bands].reverse() : [];  // highest first
    filter.replaceChildren(
      el("option", { value: "", text: "All bands" }),
      ...labels.map((band) => el("option", { value: band, text: capitalised(band) })),
    );
    filter.value = labels.includes(kept) ? kept : "";
  }

  function registerQuery() {
    const params = new URLSearchParams();
    params.set("outcome", document.getElementById("outcome").value);
    const district = document.getElementById("district").value.trim();
    const practice = document.getElementById("practice").value.trim();
    if (district) params.set("district", district);
    if (practice) params.set("practice", practice);
    params.set("top", document.getElementById("top").value.trim() || "25");
    return params;
  }

  async function loadRegister(state) {
    await state.ready;
    const query = registerQuery();
    const top = Number(query.get("top"));
    if (!Number.isInteger(top) || top < 1) {
      showStatus("How many people must be a whole number, 1 or more.");
      return;
    }
    showStatus("Loading the register…", "info");
    try {
      const answer = await call(state.session.key, `/register?${query}`);
      state.people = answer.people;
      state.query = query;
      state.role = answer.role;
      showStatus("");
      fillPlaces(answer.people);
      fillBands(state, answer.outcome);
      const section = document.getElementById("register");
      section.hidden = false;
      const outcome = outcomeTitle(state.outcomes, answer.outcome);
      const place = query.get("district") || query.get("practice") || "the whole county";
      document.getElementById("register-title").textContent = `${outcome}: ${place}, top ${query.get("top")}`;
      const notes = [...new Set(answer.people.flatMap((p) => p.notes || []))];
      const note = document.getElementById("register-note");
      note.textContent = notes.join(" ");
      note.hidden = notes.length === 0;
      renderRows(state);
    } catch (error) {
      handleError(error);
    }
  }

  function fillPlaces(people) {
    for (const [listId, field] of [["districts", "district"], ["practices", "practice_code"]]) {
      const list = document.getElementById(listId);
      const known = new Set([...list.options].map((o) => o.value));
      for (const person of people) {
        if (person[field] && !known.has(person[field])) {
          known.add(person[field]);
          list.append(el("option", { value: person[field] }));
        }
      }
    }
  }

  function renderRows(state) {
    const clinical = state.people.some((p) => typeof p.probability === "number");
    const head = document.querySelector("#register-table thead");
    const columns = ["Rank", "Person id", "District", "Practice", "Band"];
    if (clinical) columns.push("Risk");
    columns.push("What could be acted on", "Other reasons");
    head.replaceChildren(el("tr", {}, ...columns.map((c) => el("th", { scope: "col", text: c }))));
    const band = document.getElementById("band-filter").value;
    const text = document.getElementById("text-filter").value.trim().toLowerCase();
    const shown = state.people.filter((p) => (!band || p.band === band) && (!text || haystack(p).includes(text)));
    const body = document.querySelector("#register-table tbody");
    body.replaceChildren(...shown.map((p) => registerRow(p, clinical)));
    document.getElementById("shown-count").textContent =
      `Showing ${shown.length} of ${state.people.length} people. The CSV download holds all ${state.people.length}.`;
  }

  function haystack(person) {
    return [person.person_ref, person.district, person.practice_code, person.band, ...(person.reasons || []).map((r) => r.label)]
      .join(" ")
      .toLowerCase();
  }

  function registerRow(person, clinical) {
    const cell = (label, ...content) => el("td", { "data-label": label }, ...content);
    const actOn = (person.reasons || []).filter((r) => r.modifiable && r.direction === "raises");
    const others = (person.reasons || []).filter((r) => !(r.modifiable && r.direction === "raises"));
    const cells = [
      cell("Rank", String(person.rank)),
      cell("Person id", el("a", { href: `/ui/person#${encodeURIComponent(person.person_ref)}`, text: person.person_ref })),
      cell("District", person.district || ""),
      cell("Practice", person.practice_code || ""),
      cell("Band", bandBadge(person.band)),
    ];
    if (clinical) {
      cells.push(cell("Risk", el("span", {
        "data-probability": String(person.probability),
        title: `calibrated probability ${person.probability}`,
        text: percent(person.probability),
      })));
    }
    cells.push(cell("What could be acted on", labels(actOn)), cell("Other reasons", labels(others)));
    return el("tr", { "data-person": person.person_ref, "data-band": person.band }, ...cells);
  }

  function labels(reasons) {
    if (!reasons.length) return el("span", { className: "empty", text: "none" });
    return el("ul", {}, ...reasons.map((r) => el("li", { "data-feature": r.feature, text: r.label })));
  }

  async function download(state) {
    if (!state.query) return;
    const query = new URLSearchParams(state.query);
    query.set("format", "csv");
    showStatus("Preparing the CSV…", "info");
    try {
      const csv = await call(state.session.key, `/register?${query}`, { as: "text" });
      const blob = new Blob([csv], { type: "text/csv" });
      const url = URL.createObjectURL(blob);
      const place = (query.get("district") || query.get("practice") || "county").replace(/[^A-Za-z0-9_-]+/g, "-");
      const link = el("a", { href: url, download: `register-${query.get("outcome")}-${place}-${state.role}.csv` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      showStatus("");
    } catch (error) {
      handleError(error);
    }
  }

  // --- start --------------------------------------------------------------------------------

  const pages = { signin: initSignIn, person: initPerson, register: initRegister };
  // what other page scripts (referrals.js) use; they add their pages before the DOM is ready
  window.carerisk = {
    pages, call, ApiError, plainError, sentence, capitalised, el, showStatus, handleError,
    sessionOrSignIn, showActingAs, bandBadge, servedOutcomes, outcomeTitle, ID_PATTERN,
  };
  document.addEventListener("DOMContentLoaded", () => {
    const start = pages[document.body.dataset.page];
    if (start) start();
  });
})();
