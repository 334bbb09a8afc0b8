// The `pipelines:` and `endpoints:` sections of the config (pipelines_reader.h).
#include "daemon/config/pipelines_reader.h"

#include <functional>
#include <set>
#include <string>

namespace pipelined::config::detail {

namespace {

void read_variant(Reader& r, const YAML::Node& node, const std::string& key, VariantConfig& v) {
  r.read_map(node, key,
             {{"plugin", [&](auto& n, auto& k) { r.read(n, k, v.plugin); }},
              {"config", [&](auto& n, auto& k) {
                 v.config = r.to_json(n, k);
                 if (!v.config.is_object()) r.error(n, k, "expected a map");
               }},
              {"after", [&](auto& n, auto& k) { r.read_list(n, k, v.after); }},
              {"isolation", [&](auto& n, auto& k) {
                 using Isolation = VariantConfig::Isolation;
                 r.read_choice(n, k, {{"process", Isolation::Process}, {"in_process", Isolation::InProcess}}, v.isolation);
               }},
              {"memory_limit_mb", [&](auto& n, auto& k) { r.read_int(n, k, v.memory_limit_mb, 0, 1LL << 30); }},
              {"hang_grace_ms", [&](auto& n, auto& k) { r.read_millis(n, k, v.hang_grace, 0); }},
              {"runner_threads", [&](auto& n, auto& k) { r.read_int(n, k, v.runner_threads, 1, 1024); }}});
  if (v.plugin.empty()) r.error(node, key, "a variant needs 'plugin'");
}

void read_stage(Reader& r, const YAML::Node& node, const std::string& key, StageConfig& s) {
  s.line = node.Mark().line + 1;
  r.read_map(node, key,
             {{"needs", [&](auto& n, auto& k) { r.read_list(n, k, s.needs); }},
              {"input", [&](auto& n, auto& k) { r.read_choice(n, k, {{"whole", false}, {"stream", true}}, s.stream_input); }},
              {"on_failure", [&](auto& n, auto& k) {
                 r.read_choice(n, k, {{"fail", OnFailure::Fail}, {"partial", OnFailure::Partial}}, s.on_failure);
               }},
              {"fallback", [&](auto& n, auto& k) { r.read(n, k, s.fallback_to_stable); }},
              {"timeout_ms", [&](auto& n, auto& k) {
                 Millis t{0};
                 r.read_millis(n, k, t);
                 if (t.count() > 0) s.timeout = t;
               }},
              {"stable", [&](auto& n, auto& k) { r.read(n, k, s.stable); }},
              {"candidate", [&](auto& n, auto& k) { r.read(n, k, s.candidate); }},
              {"variants", [&](auto& n, auto& k) {
                 r.read_named(n, k, "variants", [&](const std::string& name, const YAML::Node& vn, const std::string& vk) {
                   VariantConfig v;
                   v.name = name;
                   read_variant(r, vn, vk, v);
                   s.variants.push_back(std::move(v));
                 });
               }}});
  if (s.variants.empty()) r.error(node, key, "a stage needs at least one variant under 'variants'");
  if (s.stable.empty()) r.error(node, key, "a stage needs 'stable' naming its stable variant");
  else if (!s.variants.empty() && s.variant(s.stable) == nullptr)
    r.error(node["stable"], join_key(key, "stable"), "stable variant '" + s.stable + "' is not among the variants");
  if (!s.candidate.empty()) {
    if (s.variant(s.candidate) == nullptr)
      r.error(node["candidate"], join_key(key, "candidate"), "candidate variant '" + s.candidate + "' is not among the variants");
    else if (s.candidate == s.stable)
      r.error(node["candidate"], join_key(key, "candidate"), "the candidate variant must differ from the stable one");
  } else if (s.variants.size() == 2) {
    for (const auto& v : s.variants)
      if (v.name != s.stable) s.candidate = v.name;  // the only other variant
  }
}

}  // namespace

void read_pipeline(Reader& r, const YAML::Node& node, const std::string& key, PipelineConfig& p) {
  r.read_map(node, key,
             {{"fallback", [&](auto& n, auto& k) {
                 r.read_choice(n, k, {{"stage", false}, {"whole_request", true}}, p.fallback_whole_request);
               }},
              {"stages", [&](auto& n, auto& k) {
                 r.read_named(n, k, "stages", [&](const std::string& name, const YAML::Node& sn, const std::string& sk) {
                   StageConfig s;
                   s.name = name;
                   read_stage(r, sn, sk, s);
                   p.stages.push_back(std::move(s));
                 });
               }}});
  if (p.stages.empty()) r.error(node, key, "a pipeline needs at least one stage under 'stages'");
}

void check_graph(Reader& r, const YAML::Node& node, const std::string& key, const PipelineConfig& p) {
  const YAML::Node stages = node["stages"];
  std::map<std::string, std::set<std::string>> edges;  // stage -> stages it waits for
  for (const auto& s : p.stages) {
    const std::string skey = key + ".stages." + s.name;
    const YAML::Node snode = stages[s.name];
    for (const auto& need : s.needs) {
      if (need == s.name || p.stage(need) == nullptr)
        r.error(snode["needs"], skey + ".needs", "unknown stage '" + need + "'");
      else
        edges[s.name].insert(need);
    }
    if (s.stream_input && s.needs.size() != 1)
      r.error(snode["input"], skey + ".input", "'input: stream' needs exactly one stage in 'needs'");
    for (const auto& v : s.variants) {
      for (const auto& a : v.after) {
        if (a == s.name || p.stage(a) == nullptr)
          r.error(snode["variants"][v.name]["after"], skey + ".variants." + v.name + ".after", "unknown stage '" + a + "'");
        else
          edges[s.name].insert(a);
      }
    }
  }
  // Depth-first search for a cycle through needs and after.
  std::map<std::string, int> state;  // 0 new, 1 on the stack, 2 done
  std::function<bool(const std::string&)> visit = [&](const std::string& s) {
    state[s] = 1;
    for (const auto& next : edges[s]) {
      if (state[next] == 1) return true;
      if (state[next] == 0 && visit(next)) return true;
    }
    state[s] = 2;
    return false;
  };
  for (const auto& s : p.stages) {
    if (state[s.name] == 0 && visit(s.name)) {
      r.error(stages[s.name], key + ".stages." + s.name, "stage graph has a cycle through 'needs'/'after' at '" + s.name + "'");
      return;
    }
  }
}

void check_template(Reader& r, const YAML::Node& node, const std::string& key, const nlohmann::json& t,
                    const PipelineConfig* p) {
  if (t.is_object()) {
    for (const auto& [k, v] : t.items()) check_template(r, node[k], join_key(key, k), v, p);
  } else if (t.is_array()) {
    for (std::size_t i = 0; i < t.size(); ++i) check_template(r, node[i], key + "[" + std::to_string(i) + "]", t[i], p);
  } else if (t.is_string()) {
    const std::string s = t.get<std::string>();
    if (s.rfind("$stages.", 0) == 0 && p != nullptr) {
      const std::string stage = s.substr(8, s.find('/') == std::string::npos ? std::string::npos : s.find('/') - 8);
      if (p->stage(stage) == nullptr) r.error(node, key, "unknown stage '" + stage + "' in " + s);
    } else if (s.rfind("$meta.", 0) == 0) {
      static const std::set<std::string> kMeta = {"request_id", "elapsed_ms", "elapsed_s", "variants"};
      if (!kMeta.count(s.substr(6))) r.error(node, key, "unknown " + s + " (known: request_id, elapsed_ms, elapsed_s, variants)");
    }
  }
}

void read_endpoint(Reader& r, const YAML::Node& node, const std::string& key, EndpointConfig& e) {
  r.read_map(node, key,
             {{"method", [&](auto& n, auto& k) {
                 r.read(n, k, e.method);
                 static const std::set<std::string> kMethods = {"GET", "POST", "PUT", "PATCH", "DELETE"};
                 if (!kMethods.count(e.method)) r.error(n, k, "unknown HTTP method '" + e.method + "'");
               }},
              {"path", [&](auto& n, auto& k) {
                 r.read(n, k, e.path);
                 if (e.path.empty() || e.path[0] != '/') r.error(n, k, "path must start with '/'");
                 else if (e.path.rfind("/admin", 0) == 0) r.error(n, k, "/admin paths are reserved for the admin listener");
               }},
              {"pipeline", [&](auto& n, auto& k) { r.read(n, k, e.pipeline); }},
              {"request", [&](auto& n, auto& k) {
                 r.read_map(n, k,
                            {{"format", [&](auto& fn, auto& fk) {
                                r.read_choice(fn, fk, {{"json", RequestFormat::Json}, {"multipart", RequestFormat::Multipart}}, e.format);
                              }},
                             {"files_field", [&](auto& fn, auto& fk) { r.read(fn, fk, e.files_field); }}});
               }},
              {"response", [&](auto& n, auto& k) { e.response = r.to_json(n, k); }},
              {"streaming", [&](auto& n, auto& k) { r.read(n, k, e.streaming); }},
              {"max_concurrent", [&](auto& n, auto& k) { r.read_int(n, k, e.max_concurrent, 0, 1000000); }}});
  if (e.path.empty()) r.error(node, key, "an endpoint needs 'path'");
  if (e.pipeline.empty()) r.error(node, key, "an endpoint needs 'pipeline'");
}

}  // namespace pipelined::config::detail
