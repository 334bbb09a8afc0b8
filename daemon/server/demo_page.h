// The demo page (GET /demo/ when server.demo is on): daemon/server/demo/index.html, compiled in so
// the daemon serves it without files to install.
#pragma once

#include <string_view>

namespace pipelined::server {

std::string_view demo_page_html();

}  // namespace pipelined::server
