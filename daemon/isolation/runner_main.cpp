// pipelined-runner: the process an isolated plugin variant runs in (runner.h). The daemon starts it
// with one end of a socket pair as the descriptor given by --fd; it is not meant to be started by hand.
#include "daemon/isolation/runner.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  if (argc != 3 || std::strcmp(argv[1], "--fd") != 0) {
    std::fprintf(stderr, "usage: pipelined-runner --fd N\n(started by pipelined for variants with `isolation: process`)\n");
    return 2;
  }
  return pipelined::isolation::serve_runner(std::atoi(argv[2]));
}
