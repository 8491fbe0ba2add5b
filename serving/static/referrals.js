// carerisk referral loop pages: the GP's "Refer to the fire service" on the person view, and the
// fire service's referral queue. Every call goes to the audited API under /v1 (ui.js's helpers).
"use strict";

(() => {
  const ui = window.carerisk;
  if (!ui) return;
  const { call, el, showStatus, handleError, plainError, sentence, bandBadge } = ui;

  const STATUS_WORDS = {
    referred: "Referred",
    accepted: "Accepted",
    visited: "Visited",
    declined: "Declined by the person",
    no_access: "No access",
    closed: "Closed",
  };
  const MOVE_WORDS = {
    accepted: "Accept",
    visited: "Record visit",
    declined: "Person declined",
    no_access: "No access",
    closed: "Close",
  };
  const FINDINGS = [
    ["trip_hazards", "Trip hazards found"],
    ["smoke_alarm_working", "Smoke alarm working"],
    ["smoker", "Smoker"],
    ["mobility_concern", "Mobility concern"],
    ["referral_made", "Onward referral made"],
  ];

  function today() {
    const now = new Date();
    const pad = (n) => String(n).padStart(2, "0");
    return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
  }

  function referralError(error) {
    if (error instanceof ui.ApiError && [409, 422].includes(error.status) && error.code !== "invalid_request") {
      return sentence(error.message || "That cannot be done.");
    }
    return plainError(error);
  }

  // --- the GP's referral on the person view ---------------------------------------------------

  document.addEventListener("carerisk:person", (event) => {
    const { session, answer, outcomes } = event.detail;
    if (session.role !== "gp") return;
    const scored = Object.entries(answer.outcomes).filter(([, score]) => !score.error);
    if (!scored.length) return;
    const section = el("section", { className: "refer", id: "refer", "aria-labelledby": "refer-title" });
    section.append(
      el("h2", { id: "refer-title", text: "Refer to the fire service" }),
      el("p", { text: "Offer a free home safety and falls check by the fire and rescue service. Ask the person first, and refer only if they agree." }),
    );
    document.getElementById("result").append(section);
    fillReferral(section, session, answer.person_id, scored, outcomes);
  });

  async function fillReferral(section, session, personId, scored, outcomes) {
    let form;
    try {
      form = await call(session.key, "/referrals/form");
    } catch (error) {
      section.append(el("p", { className: "empty", text: plainError(error) }));
      return;
    }
    if (!form.organisations.length) {
      section.append(el("p", { className: "empty", text: "No fire and rescue service takes referrals through carerisk yet." }));
      return;
    }
    section.append(referralForm(session, personId, scored, outcomes, form));
  }

  function referralForm(session, personId, scored, outcomes, form) {
    const node = el("form", { id: "refer-form", method: "post", action: "/ui/person", novalidate: "" });
    const outcomeSelect = el("select", { id: "refer-outcome" },
      ...scored.map(([name, score]) => el("option", { value: name, text: `${ui.outcomeTitle(outcomes, name)} (band ${score.band})` })));
    const orgSelect = el("select", { id: "refer-org" },
      ...form.organisations.map((org) => el("option", { value: org, text: org })));
    const items = Object.entries(form.agreement.items);
    const agreed = el("fieldset", {},
      el("legend", { text: "The person agreed that we may" }),
      ...items.map(([name, words]) => checkbox(`agree-${name}`, words, { "data-item": name })));
    node.append(
      field("refer-outcome", "Referral for", outcomeSelect),
      field("refer-org", "Fire and rescue service", orgSelect),
      agreed,
      field("refer-by", "Agreement recorded by", el("input", { id: "refer-by", type: "text", autocomplete: "name", required: "" }),
        "Your name and role, for example Dr A Patel, GP."),
      checkbox("refer-confirm", "I confirm the person agreed to this today, as written above.", { className: "confirm" }),
      el("button", { type: "submit", text: "Refer to the fire service" }),
    );
    node.addEventListener("submit", (event) => {
      event.preventDefault();
      refer(node, session, personId, scored);
    });
    return node;
  }

  function field(id, label, control, hint) {
    const box = el("div", { className: "field" }, el("label", { for: id, text: label }), control);
    if (hint) {
      box.append(el("p", { className: "hint", id: `${id}-hint`, text: hint }));
      control.setAttribute("aria-describedby", `${id}-hint`);
    }
    return box;
  }

  function checkbox(id, label, attrs = {}) {
    const { className, ...rest } = attrs;
    return el("div", { className: `check ${className || ""}`.trim() },
      el("input", { id, type: "checkbox", ...rest }),
      el("label", { for: id, text: label }));
  }

  async function refer(node, session, personId, scored) {
    const outcome = node.querySelector("#refer-outcome").value;
    const score = Object.fromEntries(scored)[outcome];
    const agreedTo = [...node.querySelectorAll("input[data-item]")].filter((box) => box.checked).map((box) => box.dataset.item);
    const recordedBy = node.querySelector("#refer-by").value.trim();
    const all = node.querySelectorAll("input[data-item]").length;
    if (agreedTo.length < all) return refuse(node, "The person must agree to everything listed before a referral can be made.", "input[data-item]");
    if (recordedBy.length < 2) return refuse(node, "Enter who recorded the agreement.", "#refer-by");
    if (!node.querySelector("#refer-confirm").checked) return refuse(node, "Confirm that the person agreed today.", "#refer-confirm");
    const body = {
      person_id: personId,
      outcome,
      score: { model_version: score.model_version, index_date: score.index_date, band: score.band },
      receiving_org: node.querySelector("#refer-org").value,
      agreement: { recorded_by: recordedBy, recorded_at: new Date().toISOString(), agreed_to: agreedTo },
    };
    const button = node.querySelector("button[type=submit]");
    button.disabled = true;
    showStatus("Sending the referral…", "info");
    try {
      const made = await call(session.key, "/referrals", { method: "POST", body });
      showStatus("");
      const referral = made.referral;
      node.replaceWith(el("p", {
        className: "done", role: "status", "data-referral": referral.id,
        text: `Referred to ${referral.receiving_org}: referral ${referral.id}, ${STATUS_WORDS[referral.status].toLowerCase()} on ${referral.created_at.slice(0, 10)}.`,
      }));
    } catch (error) {
      if (error instanceof ui.ApiError && error.status === 401) handleError(error);
      else showStatus(referralError(error));
      button.disabled = false;
    }
  }

  function refuse(node, text, selector) {
    showStatus(text);
    node.querySelector(selector).focus();
  }

  // --- the fire service's queue ------------------------------------------------------------------

  function initQueue() {
    const session = ui.sessionOrSignIn();
    if (!session) return;
    ui.showActingAs(session);
    for (const link of document.querySelectorAll("nav [data-sharing]")) link.hidden = session.sharing !== link.dataset.sharing;
    document.getElementById("queue-form").addEventListener("submit", (event) => {
      event.preventDefault();
      loadQueue(session);
    });
    loadQueue(session);
  }

  async function loadQueue(session) {
    const params = new URLSearchParams();
    const status = document.getElementById("status-filter").value;
    const district = document.getElementById("district-filter").value.trim();
    if (status) params.set("status", status);
    if (district) params.set("district", district);
    showStatus("Loading the referrals…", "info");
    try {
      const queue = await call(session.key, `/referrals?${params}`);
      showStatus("");
      const note = document.getElementById("sharing-note");
      note.hidden = false;
      note.textContent = queue.sharing === "register"
        ? "This area shares its risk register with the fire service; these are the people referred to you with their agreement."
        : "This area shares with the fire service only the people referred to it with their agreement: they are listed here.";
      const body = document.querySelector("#queue-table tbody");
      body.replaceChildren(...queue.referrals.map((r) => queueRow(session, r)));
      document.getElementById("queue").hidden = false;
      document.getElementById("queue-title").textContent = queue.organisation ? `Referrals to ${queue.organisation}` : "All referrals";
      document.getElementById("queue-count").textContent = `${queue.referrals.length} referrals.`;
    } catch (error) {
      handleError(error);
    }
  }

  function queueRow(session, referral) {
    const cell = (label, ...content) => el("td", { "data-label": label }, ...content);
    const reasons = referral.reasons.length
      ? el("ul", {}, ...referral.reasons.map((r) => el("li", { "data-feature": r.feature, text: r.label })))
      : el("span", { className: "empty", text: "none" });
    const agreement = referral.agreement;
    const row = el("tr", { "data-referral": referral.id, "data-person": referral.person_id, "data-status": referral.status },
      cell("Referred", referral.created_at.slice(0, 10)),
      cell("Person id", referral.person_id),
      cell("District", referral.district),
      cell("Band", bandBadge(referral.band)),
      cell("Reasons", reasons),
      cell("Agreement", el("span", { className: "agreed", text: `Recorded by ${agreement.recorded_by} on ${agreement.recorded_at.slice(0, 10)}: contact details and the reason for referral.` })),
      cell("Status", el("span", { className: "state", text: statusText(referral) })),
      cell("Next", moves(session, referral)),
    );
    return row;
  }

  function statusText(referral) {
    const words = STATUS_WORDS[referral.status] || referral.status;
    return referral.visit_date ? `${words} (visit ${referral.visit_date})` : words;
  }

  function moves(session, referral) {
    const box = el("div", { className: "moves" });
    if (session.role !== "fire" || !referral.moves.length) {
      box.append(el("span", { className: "empty", text: "nothing" }));
      return box;
    }
    for (const next of referral.moves) {
      const button = el("button", { type: "button", className: next === "visited" ? "" : "secondary", text: MOVE_WORDS[next] || next, "data-move": next });
      button.addEventListener("click", () => {
        if (next === "visited") showFindings(session, referral, box);
        else move(session, referral, { status: next });
      });
      box.append(button);
    }
    return box;
  }

  function showFindings(session, referral, box) {
    const id = (name) => `${name}-${referral.id}`;
    const form = el("form", { className: "findings", method: "post", action: "/ui/referrals", novalidate: "" },
      field(id("visit-date"), "Visit date", el("input", { id: id("visit-date"), type: "date", value: today(), max: today(), required: "" })),
      el("fieldset", {}, el("legend", { text: "What the visit found" }),
        ...FINDINGS.map(([name, label]) => checkbox(id(name), label, { "data-finding": name }))),
      el("button", { type: "submit", text: "Save visit" }),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const findings = Object.fromEntries([...form.querySelectorAll("input[data-finding]")].map((b) => [b.dataset.finding, b.checked]));
      const visitDate = form.querySelector("input[type=date]").value;
      if (!visitDate) {
        showStatus("Enter the date of the visit.");
        return;
      }
      move(session, referral, { status: "visited", visit_date: visitDate, findings });
    });
    box.replaceChildren(form);
    form.querySelector("input[type=date]").focus();
  }

  async function move(session, referral, body) {
    showStatus("Saving…", "info");
    try {
      const moved = await call(session.key, `/referrals/${encodeURIComponent(referral.id)}/status`, { method: "POST", body });
      showStatus(`${referral.person_id}: ${STATUS_WORDS[moved.referral.status].toLowerCase()}.`, "info");
      const row = document.querySelector(`tr[data-referral="${referral.id}"]`);
      if (row) row.replaceWith(queueRow(session, moved.referral));
    } catch (error) {
      if (error instanceof ui.ApiError && error.status === 401) handleError(error);
      else showStatus(referralError(error));
    }
  }

  ui.pages.referrals = initQueue;
})();
