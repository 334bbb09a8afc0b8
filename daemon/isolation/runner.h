// The plugin runner: the process that hosts one isolated plugin instance (a variant configured with
// `isolation: process`). It loads the plugin, creates the instance and runs it for the daemon over
// the socket it was started with (wire.h), giving the plugin the same host services as in-process:
// results, item streams and logging cross to the daemon, outbound HTTP goes through the daemon's
// client (so provider limits stay global), task groups and post() run on the runner's own pool.
// A crash here ends this process only; the daemon's supervisor (supervisor.h) fails the runs that
// were in flight and starts a new runner.
#pragma once

namespace pipelined::isolation {

// Serves the daemon on `fd` until it asks the runner to shut down (returns 0 after destroying the
// instance) or goes away (the process exits at once). Returns nonzero when the plugin cannot be
// loaded or created, after telling the daemon why.
int serve_runner(int fd);

}  // namespace pipelined::isolation
