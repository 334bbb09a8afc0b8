// /admin/rollout and /admin/report: JSON bodies and queries become typed RolloutController calls;
// its typed errors become HTTP statuses. Routes, bodies and statuses: docs/admin-api.md.
#include "common/duration.h"
#include "daemon/server/admin_routes.h"

namespace pipelined::server {

using nlohmann::json;
namespace ro = rollout;

namespace {

int http_status(ro::Error::Kind kind) {
  switch (kind) {
    case ro::Error::Kind::NotFound:
      return 404;
    case ro::Error::Kind::Conflict:
      return 409;
    case ro::Error::Kind::Unavailable:
      return 503;
    default:
      return 400;
  }
}

json changed_json(const ro::Changed& c, const char* list_name) {
  json list = json::array();
  for (const auto& r : c.rollouts) list.push_back(r.to_json());
  json out = {{"persisted", c.persisted}};
  if (std::string(list_name) == "rollout")
    out["rollout"] = list.empty() ? json(nullptr) : list.front();
  else
    out[list_name] = list;
  return out;
}

template <class T, class Render>
AdminAnswer answer(const ro::Result<T>& r, Render render) {
  if (const auto* e = std::get_if<ro::Error>(&r)) return admin_error(http_status(e->kind), e->message);
  return {200, render(std::get<T>(r))};
}

// A string member, or the error that names it.
bool read_string(const json& body, const char* name, std::string& out, std::string& error) {
  if (!body.contains(name)) return true;
  if (!body[name].is_string()) return error = std::string("'") + name + "' must be a string", false;
  out = body[name].get<std::string>();
  return true;
}

ro::Result<ro::Target> target_of(const json& body) {
  ro::Target t;
  std::string error;
  if (!read_string(body, "pipeline", t.pipeline, error) || !read_string(body, "actor", t.actor, error) ||
      !read_string(body, "reason", t.reason, error))
    return ro::Error{ro::Error::Kind::Invalid, error};
  return t;
}

ro::Result<ro::RolloutChange> change_of(const json& body) {
  auto bad = [](std::string m) { return ro::Error{ro::Error::Kind::Invalid, std::move(m)}; };
  ro::RolloutChange c;
  std::string error;
  if (!read_string(body, "pipeline", c.pipeline, error) || !read_string(body, "actor", c.actor, error) ||
      !read_string(body, "reason", c.reason, error))
    return bad(error);
  if (!body.contains("percent") || !body["percent"].is_number()) return bad("'percent' (0-100) is required");
  c.percent = body["percent"].get<double>();
  if (body.contains("shadow_percent")) {
    if (!body["shadow_percent"].is_number()) return bad("'shadow_percent' must be a number");
    c.shadow_percent = body["shadow_percent"].get<double>();
  }
  if (body.contains("stages")) {
    if (!body["stages"].is_object()) return bad("'stages' must map stage names to variant names");
    for (const auto& [stage, variant] : body["stages"].items()) {
      if (!variant.is_string()) return bad("stage '" + stage + "' has no variant " + variant.dump());
      c.stages[stage] = variant.get<std::string>();
    }
  }
  if (body.contains("steps")) {
    if (!body["steps"].is_array()) return bad("'steps' must be a list of percents");
    std::vector<double> steps;
    for (const auto& v : body["steps"]) {
      if (!v.is_number()) return bad("'steps' must be increasing percents in (0, 100]");
      steps.push_back(v.get<double>());
    }
    c.steps = steps;
  }
  if (body.contains("dwell_ms")) {
    if (!body["dwell_ms"].is_number_integer() || body["dwell_ms"].get<std::int64_t>() < 0)
      return bad("'dwell_ms' must be a non-negative integer");
    c.dwell = ro::Millis(body["dwell_ms"].get<std::int64_t>());
  }
  if (body.contains("dwell")) {
    const auto d = body["dwell"].is_string() ? common::parse_duration(body["dwell"].get<std::string>()) : std::nullopt;
    if (!d) return bad("bad 'dwell' (use 30s, 15m, 1.5h, 7d)");
    c.dwell = *d;
  }
  return c;
}

template <class F>
AdminAnswer with_target(const AdminCall& call, F action) {
  auto t = target_of(call.body);
  if (const auto* e = std::get_if<ro::Error>(&t)) return admin_error(400, e->message);
  return action(std::get<ro::Target>(t));
}

}  // namespace

std::vector<AdminRoute> rollout_routes(ro::RolloutController& rollout, ReportAnnotator annotate_report) {
  auto& c = rollout;
  auto one = [](const ro::Changed& ch) { return changed_json(ch, "rollout"); };
  return {
      {"GET", "/admin/rollout",
       [&c](const AdminCall&) {
         return AdminAnswer{200, c.status().to_json()};
       }},
      {"POST", "/admin/rollout",
       [&c, one](const AdminCall& call) {
         auto change = change_of(call.body);
         if (const auto* e = std::get_if<ro::Error>(&change)) return admin_error(400, e->message);
         return answer(c.start_or_update(std::get<ro::RolloutChange>(change)), one);
       }},
      {"POST", "/admin/rollout/rollback",
       [&c](const AdminCall& call) {
         return with_target(call, [&](const ro::Target& t) {
           return answer(c.rollback(t), [](const ro::Changed& ch) { return changed_json(ch, "rolled_back"); });
         });
       }},
      {"POST", "/admin/rollout/promote",
       [&c, one](const AdminCall& call) { return with_target(call, [&](const ro::Target& t) { return answer(c.promote(t), one); }); }},
      {"POST", "/admin/rollout/pause",
       [&c, one](const AdminCall& call) { return with_target(call, [&](const ro::Target& t) { return answer(c.pause(t), one); }); }},
      {"POST", "/admin/rollout/resume",
       [&c, one](const AdminCall& call) { return with_target(call, [&](const ro::Target& t) { return answer(c.resume(t), one); }); }},
      {"GET", "/admin/report",
       [&c, annotate_report](const AdminCall& call) {
         ro::ReportQuery q;
         q.pipeline = call.query("pipeline");
         if (const std::string since = call.query("since"); !since.empty()) {
           const auto d = common::parse_duration(since);
           if (!d) return admin_error(400, "bad 'since' " + since + " (use 30s, 15m, 1.5h, 7d)");
           q.since = *d;
         }
         if (const std::string id = call.query("rollout"); !id.empty()) {
           char* end = nullptr;
           q.rollout_id = std::strtoll(id.c_str(), &end, 10);
           if (*end != '\0' || q.rollout_id <= 0) return admin_error(400, "bad 'rollout' " + id + " (a rollout id)");
         }
         return answer(c.report(q), [&](json j) {
           if (j.contains("pipelines") && j["pipelines"].is_object())
             for (auto& [name, p] : j["pipelines"].items()) annotate_report(name, p);
           return j;
         });
       }},
  };
}

}  // namespace pipelined::server
