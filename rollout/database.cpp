#include "rollout/database.h"

namespace pipelined::rollout {

bool is_postgresql_url(const std::string& location) {
  return location.rfind("postgresql://", 0) == 0 || location.rfind("postgres://", 0) == 0;
}

std::unique_ptr<Database> open_database(const std::string& location, OpenMode mode) {
  if (is_postgresql_url(location)) return open_postgresql(location);
  return open_sqlite(location, mode);
}

}  // namespace pipelined::rollout
