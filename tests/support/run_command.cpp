#include "support/run_command.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace eventlog::testing {

std::string ShellQuote(const std::string& text) {
    std::string out = "'";
    for (const char c : text) {
        if (c == '\'') {
            out += "'\\''";
        } else {
            out.push_back(c);
        }
    }
    out.push_back('\'');
    return out;
}

CommandResult RunCommand(const std::string& command, const std::string& input) {
    static std::atomic<int> counter{0};
    const auto path = std::filesystem::temp_directory_path() /
                      ("eventlog_cmd_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".in");
    {
        std::ofstream f(path, std::ios::binary);
        f << input;
    }
    CommandResult result;
    FILE* p = ::popen(("(" + command + ") < " + ShellQuote(path.string()) + " 2>&1").c_str(), "r");
    if (p == nullptr) {
        std::filesystem::remove(path);
        throw std::runtime_error("popen failed");
    }
    char buf[4096];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) result.output.append(buf, n);
    const int status = ::pclose(p);
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::filesystem::remove(path);
    return result;
}

}  // namespace eventlog::testing
