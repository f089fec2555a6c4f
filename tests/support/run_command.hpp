#pragma once

// Runs a reference tool (promtool, node, python3) for protocol tests and captures what it prints.

#include <string>

namespace eventlog::testing {

/// Exit code and combined stdout + stderr of a command.
struct CommandResult {
    int exit_code{-1};  ///< -1 when it did not exit normally.
    std::string output;
};

/// Runs `command` with /bin/sh, `input` on its standard input (through a temporary file). Throws
/// std::runtime_error when the shell cannot be started.
CommandResult RunCommand(const std::string& command, const std::string& input = "");

/// `text` quoted for /bin/sh.
std::string ShellQuote(const std::string& text);

}  // namespace eventlog::testing
