#pragma once

#include <string_view>
#include <vector>

namespace eventlog::outbox::detail {

/// One migration file compiled into the binary.
struct EmbeddedMigration {
    std::string_view engine;  ///< "postgres" or "clickhouse" (the folder name).
    std::string_view name;    ///< "0001_outbox": the number then the name.
    std::string_view sql;
};

/// All migrations, sorted by engine then number.
const std::vector<EmbeddedMigration>& EmbeddedMigrations();

}  // namespace eventlog::outbox::detail
