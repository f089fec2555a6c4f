// `eventlog createsuperuser` and `eventlog admin ...` as processes (label e2e; docs/admin-console.md): the password
// from standard input or typed twice on a terminal without echo, refusals that name the rule, list, disable and
// set-password, each as the database then holds it.
#include "e2e_support.hpp"
#include "support/run_command.hpp"

namespace eventlog::e2e {
namespace {

using namespace std::chrono_literals;

class AdminCli : public E2eTest {
protected:
    // The commands run as the world's migrating role (the schema's owner), as `apikey` does in serve_e2etest.cpp.

    /// Runs `eventlog ARGS...` through /bin/sh with `input` on its standard input (the world's environment).
    testing::CommandResult Run(const std::vector<std::string>& args, const std::string& input) {
        std::string command = "env -i";
        for (const auto& var : world_->ChildEnv({{"DATABASE_URL", world_->Dsn()}}))
            command += " " + testing::ShellQuote(var);
        command += " " + testing::ShellQuote(EVENTLOG_BINARY);
        for (const auto& arg : args) command += " " + testing::ShellQuote(arg);
        return testing::RunCommand(command, input);
    }

    /// As Run, on a pseudo-terminal (util-linux `script`), typing `lines` one a second.
    testing::CommandResult RunOnTerminal(const std::vector<std::string>& args, const std::vector<std::string>& lines) {
        std::string inner = "env -i";
        for (const auto& var : world_->ChildEnv({{"DATABASE_URL", world_->Dsn()}}))
            inner += " " + testing::ShellQuote(var);
        inner += " " + testing::ShellQuote(EVENTLOG_BINARY);
        for (const auto& arg : args) inner += " " + testing::ShellQuote(arg);
        std::string typing = "(";
        for (const auto& line : lines) typing += "sleep 1; printf '%s\\n' " + testing::ShellQuote(line) + "; ";
        typing += "sleep 1)";
        return testing::RunCommand(typing + " | script -qec " + testing::ShellQuote(inner) + " /dev/null");
    }

    std::string AdminList() {
        const auto listed = world_->Eventlog({"admin", "list"}, {{"DATABASE_URL", world_->Dsn()}}, 30s);
        EXPECT_TRUE(listed.Ok()) << listed.output;
        return listed.output;
    }
};

TEST_F(AdminCli, CreatesuperuserWithPasswordStdinThenListDisableAndSetPassword) {
    auto created = Run({"createsuperuser", "--username", "ada", "--email", "ada@example.com", "--password-stdin"},
                       "correct horse battery staple\n");
    ASSERT_EQ(created.exit_code, 0) << created.output;
    EXPECT_NE(created.output.find("created administrator ada"), std::string::npos) << created.output;
    EXPECT_EQ(created.output.find("correct horse"), std::string::npos) << created.output;

    std::string listed = AdminList();
    EXPECT_NE(listed.find("ada"), std::string::npos) << listed;
    EXPECT_NE(listed.find("active"), std::string::npos) << listed;
    EXPECT_NE(listed.find("email=ada@example.com"), std::string::npos) << listed;
    EXPECT_NE(listed.find("last_login=never"), std::string::npos) << listed;
    EXPECT_EQ(listed.find("argon2"), std::string::npos) << listed;

    // The same username again: refused, exit 2, naming the field.
    const auto again = Run({"createsuperuser", "--username", "ada", "--password-stdin"}, "another fine passphrase\n");
    EXPECT_EQ(again.exit_code, 2) << again.output;
    EXPECT_NE(again.output.find("username: an administrator with this username already exists"), std::string::npos)
        << again.output;

    const auto set = Run({"admin", "set-password", "ada", "--password-stdin"}, "a newer passphrase\n");
    EXPECT_EQ(set.exit_code, 0) << set.output;
    const auto disabled = world_->Eventlog({"admin", "disable", "ada"}, {{"DATABASE_URL", world_->Dsn()}}, 30s);
    EXPECT_TRUE(disabled.Ok()) << disabled.output;
    EXPECT_NE(AdminList().find("disabled"), std::string::npos);
    const auto missing = world_->Eventlog({"admin", "disable", "nobody"}, {{"DATABASE_URL", world_->Dsn()}}, 30s);
    EXPECT_TRUE(WIFEXITED(missing.status) && WEXITSTATUS(missing.status) == 1) << missing.output;
    EXPECT_NE(missing.output.find("no administrator named nobody"), std::string::npos) << missing.output;

    // What the database holds: one argon2id hash of the new password, and the audit trail of the three changes.
    auto pg = pg::Connection::Open({.conninfo = world_->Dsn()});
    const auto row = pg.Exec("SELECT password_hash, disabled FROM eventlog.console_admin WHERE username = 'ada'");
    ASSERT_EQ(row.Rows(), 1);
    EXPECT_EQ(row.Get(0, 0).substr(0, 10), "$argon2id$");
    EXPECT_EQ(row.Get(0, 1), "t");
    EXPECT_EQ(pg.Exec("SELECT string_agg(action, ' ' ORDER BY id) FROM eventlog.console_audit").Get(0, 0),
              "admin_created admin_password_set admin_disabled");
}

TEST_F(AdminCli, RefusedPasswordsNameTheRuleAndCreateNothing) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"short1!", "password: too short: expected at least 10 characters"},
        {"password123", "password: too common: it is on the list of common passwords"},
        {"grace.hopper.1906", "password: too similar to the username: it contains the username"},
        {"", "password: too short"},
    };
    for (const auto& [password, rule] : cases) {
        const auto r = Run({"createsuperuser", "--username", "grace.hopper", "--password-stdin"}, password + "\n");
        EXPECT_EQ(r.exit_code, 2) << password << ": " << r.output;
        EXPECT_NE(r.output.find(rule), std::string::npos) << password << ": " << r.output;
    }
    // Without --password-stdin and without a terminal it says what to do instead of waiting for a prompt.
    const auto no_tty = Run({"createsuperuser", "--username", "grace"}, "correct horse battery staple\n");
    EXPECT_EQ(no_tty.exit_code, 2) << no_tty.output;
    EXPECT_NE(no_tty.output.find("--password-stdin"), std::string::npos) << no_tty.output;
    EXPECT_NE(AdminList().find("no administrators"), std::string::npos);
}

TEST_F(AdminCli, OnATerminalThePasswordIsAskedTwiceWithoutEcho) {
    const auto differ = RunOnTerminal({"createsuperuser", "--username", "ada"},
                                      {"correct horse battery staple", "correct horse battery stapler"});
    EXPECT_NE(differ.output.find("Password (again): "), std::string::npos) << differ.output;
    EXPECT_NE(differ.output.find("the two passwords differ"), std::string::npos) << differ.output;
    EXPECT_NE(AdminList().find("no administrators"), std::string::npos);

    const auto typed = RunOnTerminal({"createsuperuser", "--username", "ada"},
                                     {"correct horse battery staple", "correct horse battery staple"});
    EXPECT_NE(typed.output.find("Password: "), std::string::npos) << typed.output;
    EXPECT_NE(typed.output.find("created administrator ada"), std::string::npos) << typed.output;
    EXPECT_EQ(typed.output.find("correct horse"), std::string::npos) << "the password was echoed:\n" << typed.output;
    EXPECT_NE(AdminList().find("ada"), std::string::npos);
}

}  // namespace
}  // namespace eventlog::e2e
