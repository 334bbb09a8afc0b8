// A note the daemon leaves when it dies of a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
// SIGABRT): the signal and the non-stable plugins that were loaded, so the next start can say which
// candidate probably crashed it. Written from the signal handler with write(2) only.
#pragma once

#include <optional>
#include <string>

namespace pipelined::server {

// Installs the handlers; the marker file is `path`. Call once.
void install_crash_marker(const std::string& path);
// What the marker names besides the signal: set at start and after each reload.
void set_crash_suspects(const std::string& text);
// The marker a previous run left, removed once read; nullopt when there is none.
std::optional<std::string> take_crash_marker(const std::string& path);

}  // namespace pipelined::server
