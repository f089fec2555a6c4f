#pragma once

#include <CLI/CLI.hpp>
#include <eventlog/pg/connection.hpp>
#include <functional>
#include <optional>
#include <string>

namespace eventlog::cli {

/// The `createsuperuser` and `admin list|disable|set-password` commands (docs/admin-console.md): their options on
/// construction, their work in Run(). Not copyable; lives as long as the CLI::App it registered on.
class AdminCommands {
public:
    /// Registers the commands on `app`.
    explicit AdminCommands(CLI::App& app);
    AdminCommands(const AdminCommands&) = delete;
    AdminCommands& operator=(const AdminCommands&) = delete;

    /// The exit code of the command the parsed line chose, nullopt when it chose none of these. `open_postgres`
    /// opens the configured database. Throws eventlog::Error as the other commands do (main prints it).
    std::optional<int> Run(const std::function<pg::Connection()>& open_postgres);

private:
    CLI::App* createsuperuser_{nullptr};
    CLI::App* list_{nullptr};
    CLI::App* disable_{nullptr};
    CLI::App* set_password_{nullptr};
    std::string username_;
    std::string email_;
    bool password_stdin_{false};
};

}  // namespace eventlog::cli
