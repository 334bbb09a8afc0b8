// Readers of the config's `pipelines:` and `endpoints:` sections, for config.cpp's read of the whole
// file: variants, stages and their graph, endpoints and their response templates. Internal to
// daemon/config.
#pragma once

#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>
#include <string>

#include "daemon/config/config.h"
#include "daemon/config/yaml_reader.h"

namespace pipelined::config::detail {

// One pipeline: its stages, their variants, stable/candidate, fallback.
void read_pipeline(Reader& r, const YAML::Node& node, const std::string& key, PipelineConfig& p);
// Needs and `after` must name stages of the pipeline and form no cycle.
void check_graph(Reader& r, const YAML::Node& node, const std::string& key, const PipelineConfig& p);
// One endpoint: method, path, pipeline, request and response mapping, limits.
void read_endpoint(Reader& r, const YAML::Node& node, const std::string& key, EndpointConfig& e);
// "$stages.<stage>[/pointer]" references in a response template must name stages of the pipeline
// (p null: its pipeline is unknown, already an error); "$meta." ones must be known fields.
void check_template(Reader& r, const YAML::Node& node, const std::string& key, const nlohmann::json& t, const PipelineConfig* p);

}  // namespace pipelined::config::detail
