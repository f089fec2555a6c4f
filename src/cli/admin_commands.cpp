// `eventlog createsuperuser` and `eventlog admin ...`: administrators of the console (src/admin/).
#include "cli/admin_commands.hpp"

#include <fmt/format.h>
#include <termios.h>
#include <unistd.h>

#include <csignal>
#include <eventlog/admin/administrators.hpp>
#include <eventlog/admin/password.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/core/text.hpp>
#include <iostream>

namespace eventlog::cli {
namespace {

// The terminal's settings while a password is read without echo, for the SIGINT handler to put back.
struct termios saved_terminal {};

extern "C" void RestoreTerminalAndDie(int signal_number) {
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_terminal);
    std::signal(signal_number, SIG_DFL);
    std::raise(signal_number);
}

/// Echo off on the terminal for its lifetime (and on Ctrl-C, which then ends the command as usual).
class NoEcho {
public:
    NoEcho() {
        if (::tcgetattr(STDIN_FILENO, &saved_terminal) != 0) throw ConfigError("cannot read the terminal's settings");
        struct termios quiet = saved_terminal;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        quiet.c_lflag |= ECHONL;
        previous_ = std::signal(SIGINT, RestoreTerminalAndDie);
        ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    ~NoEcho() {
        ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_terminal);
        std::signal(SIGINT, previous_);
    }
    NoEcho(const NoEcho&) = delete;
    NoEcho& operator=(const NoEcho&) = delete;

private:
    void (*previous_)(int){SIG_DFL};
};

/// One line of standard input without its line end; false at the end of the input.
bool ReadLine(std::string& line) {
    if (!std::getline(std::cin, line)) return false;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return true;
}

/// The new password: one line of standard input with --password-stdin, else asked twice on the terminal without
/// echo (refused when standard input is not a terminal, so that a script never hangs on a prompt). The rules are
/// checked before the second prompt, so a refused password is said at once.
std::string ReadNewPassword(bool from_stdin, const std::string& username) {
    std::string password;
    if (from_stdin) {
        if (!ReadLine(password)) throw InvalidInputError("password", "expected one line on standard input");
        admin::CheckPassword(password, username);
        return password;
    }
    if (::isatty(STDIN_FILENO) == 0) {
        throw InvalidInputError("password",
                                "standard input is not a terminal: pass --password-stdin and write the password as "
                                "one line on standard input");
    }
    std::string again;
    {
        const NoEcho quiet;
        std::cerr << "Password: " << std::flush;
        if (!ReadLine(password)) throw InvalidInputError("password", "no password given");
        admin::CheckPassword(password, username);
        std::cerr << "Password (again): " << std::flush;
        if (!ReadLine(again)) throw InvalidInputError("password", "no password given");
    }
    if (again != password) throw InvalidInputError("password", "the two passwords differ");
    return password;
}

}  // namespace

AdminCommands::AdminCommands(CLI::App& app) {
    createsuperuser_ = app.add_subcommand(
        "createsuperuser", "Create an administrator of the web console (/admin/); asks for the password twice");
    createsuperuser_->add_option("--username", username_, "1-150 letters, digits or @.+-_")->required();
    createsuperuser_->add_option("--email", email_, "The administrator's email address (optional)");
    createsuperuser_->add_flag("--password-stdin", password_stdin_,
                               "Read the password as one line from standard input instead of asking");

    auto* admin = app.add_subcommand("admin", "List, disable or set the password of console administrators");
    admin->require_subcommand(1);
    list_ = admin->add_subcommand("list", "List administrators (never their password hashes)");
    disable_ = admin->add_subcommand("disable", "Disable an administrator and end its console sessions");
    disable_->add_option("NAME", username_, "The administrator's username")->required();
    set_password_ = admin->add_subcommand("set-password",
                                          "Set an administrator's password (asks twice) and end its console sessions");
    set_password_->add_option("NAME", username_, "The administrator's username")->required();
    set_password_->add_flag("--password-stdin", password_stdin_,
                            "Read the password as one line from standard input instead of asking");
}

std::optional<int> AdminCommands::Run(const std::function<pg::Connection()>& open_postgres) {
    if (*createsuperuser_) {
        admin::CheckUsername(username_);
        const std::string password = ReadNewPassword(password_stdin_, username_);
        auto pg = open_postgres();
        admin::CreateAdministrator(pg, username_, email_, password);
        std::cout << "created administrator " << SafeForTerminal(username_)
                  << "; sign in at /admin/login/ on the API server\n";
        return 0;
    }
    if (*list_) {
        auto pg = open_postgres();
        const auto admins = admin::ListAdministrators(pg);
        if (admins.empty()) std::cout << "no administrators (create one: eventlog createsuperuser --username NAME)\n";
        for (const auto& a : admins) {
            std::cout << fmt::format("{:<24} {} email={} created={} last_login={}\n", SafeForTerminal(a.username),
                                     a.disabled ? "disabled" : "active  ", SafeForTerminal(a.email), a.created_at,
                                     a.last_login_at.empty() ? std::string("never") : a.last_login_at);
        }
        return 0;
    }
    if (*disable_) {
        auto pg = open_postgres();
        if (!admin::DisableAdministrator(pg, username_)) {
            std::cerr << "error: no administrator named " << SafeForTerminal(username_) << "\n";
            return 1;
        }
        std::cout << "disabled administrator " << SafeForTerminal(username_) << "; its sessions are ended\n";
        return 0;
    }
    if (*set_password_) {
        const std::string password = ReadNewPassword(password_stdin_, username_);
        auto pg = open_postgres();
        if (!admin::SetAdministratorPassword(pg, username_, password)) {
            std::cerr << "error: no administrator named " << SafeForTerminal(username_) << "\n";
            return 1;
        }
        std::cout << "set the password of administrator " << SafeForTerminal(username_) << "; its sessions are ended\n";
        return 0;
    }
    return std::nullopt;
}

}  // namespace eventlog::cli
