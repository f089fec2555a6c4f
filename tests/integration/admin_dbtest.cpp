// Administrators of the console against a real PostgreSQL (label db; migration 0019, docs/admin-console.md):
// created, listed, disabled and re-passworded through eventlog_admin's functions with an audit row each; logins as
// the API server runs them under eventlog_producer (right and wrong password, disabled, throttling per username and
// per client address, idle expiry, logout); and least privilege: neither role reads a password hash.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <eventlog/admin/administrators.hpp>
#include <eventlog/admin/password.hpp>
#include <eventlog/admin/sessions.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/outbox/migrate.hpp>
#include <eventlog/pg/connection.hpp>
#include <string>
#include <vector>

#include "outbox/migrations_embedded.hpp"
#include "support/test_env.hpp"

namespace eventlog {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::StackTest;
using ::testing::StartsWith;
using testing::TestStack;
using namespace std::chrono_literals;

constexpr std::string_view kPassword = "correct horse battery staple";

class AdminTest : public StackTest {
protected:
    void TearDown() override {
        for (const auto& role : roles_) {
            try {
                stack_->Pg().Exec("DROP OWNED BY " + role + " CASCADE");
                stack_->Pg().Exec("DROP ROLE IF EXISTS " + role);
            } catch (const std::exception& e) {
                ADD_FAILURE() << "cleanup of role " << role << ": " << e.what();
            }
        }
        StackTest::TearDown();
    }

    /// A session of a login role unique to this test database that holds only `group`.
    pg::Connection SessionIn(const std::string& group) {
        const std::string role = stack_->DatabaseName() + "_" + group;
        stack_->Pg().Exec("CREATE ROLE " + role + " LOGIN PASSWORD 'pw' IN ROLE " + group);
        stack_->Pg().Exec("GRANT CONNECT ON DATABASE " + stack_->DatabaseName() + " TO " + role);
        roles_.push_back(role);
        pg::ConnectOptions options;
        auto config = stack_->Config().postgres;
        config.user = role;
        config.password = "pw";
        options.conninfo = config.ConnInfo();
        return pg::Connection::Open(options);
    }

    /// The audit log as "actor action target", oldest first.
    std::vector<std::string> Audit() {
        const auto r =
            stack_->Pg().Exec("SELECT actor || ' ' || action || ' ' || target FROM eventlog.console_audit ORDER BY id");
        std::vector<std::string> out;
        for (int i = 0; i < r.Rows(); ++i) out.emplace_back(r.Get(i, 0));
        return out;
    }

    std::string StoredHash(const std::string& username) {
        return std::string(stack_->Pg()
                               .Exec("SELECT password_hash FROM eventlog.console_admin WHERE username = $1", {username})
                               .Get(0, 0));
    }

    std::vector<std::string> roles_;
};

TEST_F(AdminTest, TheAdminRoleCreatesListsDisablesAndRepasswordsAdministratorsWithAnAuditRowEach) {
    auto cli = SessionIn("eventlog_admin");
    admin::CreateAdministrator(cli, "ada", "ada@example.com", kPassword);
    admin::CreateAdministrator(cli, "grace", "", "a different passphrase");

    const auto admins = admin::ListAdministrators(cli);
    ASSERT_EQ(admins.size(), 2u);
    EXPECT_EQ(admins[0].username, "ada");
    EXPECT_EQ(admins[0].email, "ada@example.com");
    EXPECT_FALSE(admins[0].disabled);
    EXPECT_THAT(admins[0].created_at, ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z"));
    EXPECT_EQ(admins[0].last_login_at, "");
    EXPECT_EQ(admins[1].username, "grace");

    // argon2id, a salt of its own per administrator, and the stored hash verifies only the right password.
    const std::string ada = StoredHash("ada");
    const std::string grace = StoredHash("grace");
    EXPECT_THAT(ada, StartsWith("$argon2id$v=19$"));
    EXPECT_NE(admin::SettingOf(ada), admin::SettingOf(grace));
    EXPECT_TRUE(admin::VerifyPassword(kPassword, ada));
    EXPECT_FALSE(admin::VerifyPassword("a different passphrase", ada));

    EXPECT_TRUE(admin::SetAdministratorPassword(cli, "ada", "a newer passphrase"));
    EXPECT_TRUE(admin::VerifyPassword("a newer passphrase", StoredHash("ada")));
    EXPECT_FALSE(admin::VerifyPassword(kPassword, StoredHash("ada")));
    EXPECT_TRUE(admin::DisableAdministrator(cli, "grace"));
    EXPECT_TRUE(admin::ListAdministrators(cli)[1].disabled);
    EXPECT_FALSE(admin::DisableAdministrator(cli, "nobody"));
    EXPECT_FALSE(admin::SetAdministratorPassword(cli, "nobody", "a newer passphrase"));

    EXPECT_THAT(Audit(), ElementsAre("cli admin_created ada", "cli admin_created grace", "cli admin_password_set ada",
                                     "cli admin_disabled grace"));
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.console_audit WHERE db_role <> '" +
                              stack_->DatabaseName() + "_eventlog_admin'"),
              0);
}

TEST_F(AdminTest, ADuplicateUsernameAndABadPasswordAreRefusedNamingTheRuleAndWriteNothing) {
    auto cli = SessionIn("eventlog_admin");
    admin::CreateAdministrator(cli, "ada", "", kPassword);
    const auto refusal = [&](std::string_view username, std::string_view password) -> std::string {
        try {
            admin::CreateAdministrator(cli, username, "", password);
            return "";
        } catch (const InvalidInputError& e) {
            return e.what();
        }
    };
    EXPECT_EQ(refusal("ada", "another good passphrase"),
              "username: an administrator with this username already exists");
    EXPECT_EQ(refusal("bob", "short1"), "password: too short: expected at least 10 characters");
    EXPECT_EQ(refusal("bob", "qwertyuiop"), "password: too common: it is on the list of common passwords");
    EXPECT_EQ(refusal("bobby_tables", "bobby_tables2024"),
              "password: too similar to the username: it contains the username");
    EXPECT_EQ(refusal("bob smith", kPassword), "username: expected 1 to 150 letters, digits or @.+-_");
    try {
        admin::SetAdministratorPassword(cli, "ada", "password123");
        ADD_FAILURE() << "a common password was set";
    } catch (const InvalidInputError& e) {
        EXPECT_THAT(e.what(), HasSubstr("too common"));
    }
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.console_admin"), 1);
    EXPECT_TRUE(admin::VerifyPassword(kPassword, StoredHash("ada")));
}

TEST_F(AdminTest, TheApiRoleLogsInWithTheRightPasswordOnlyAndNeverReadsAHash) {
    auto cli = SessionIn("eventlog_admin");
    admin::CreateAdministrator(cli, "ada", "", kPassword);
    auto& api = stack_->Producer();

    EXPECT_EQ(admin::Login(api, "ada", "Correct horse battery staple", "10.0.0.1", 600s).outcome,
              admin::LoginOutcome::kRefused);
    EXPECT_EQ(admin::Login(api, "nobody", kPassword, "10.0.0.1", 600s).outcome, admin::LoginOutcome::kRefused);
    const auto ok = admin::Login(api, "ada", kPassword, "10.0.0.1", 600s);
    ASSERT_EQ(ok.outcome, admin::LoginOutcome::kOk);
    EXPECT_EQ(ok.session_token.size(), 43u);
    EXPECT_EQ(admin::SessionAdministrator(api, ok.session_token, 600s), "ada");
    EXPECT_EQ(admin::SessionAdministrator(api, std::string(43, 'A'), 600s), std::nullopt);
    EXPECT_EQ(admin::SessionAdministrator(api, "not a token", 600s), std::nullopt);
    EXPECT_NE(admin::ListAdministrators(cli)[0].last_login_at, "");
    // Only the token's SHA-256 is stored.
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.console_session WHERE token_hash = "
                              "sha256(convert_to('" +
                              ok.session_token + "', 'UTF8'))"),
              1);

    EXPECT_TRUE(admin::Logout(api, ok.session_token, "10.0.0.1"));
    EXPECT_FALSE(admin::Logout(api, ok.session_token, "10.0.0.1"));
    EXPECT_EQ(admin::SessionAdministrator(api, ok.session_token, 600s), std::nullopt);
    EXPECT_THAT(Audit(), ElementsAre("cli admin_created ada", "ada login_failed ada", "nobody login_failed nobody",
                                     "ada login ada", "ada logout ada"));
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.console_audit WHERE client_address = '10.0.0.1'"), 4);
    // A name no administrator can have is refused, counted, and recorded cut to 150 bytes.
    EXPECT_EQ(admin::Login(api, std::string(5000, 'x') + " y", kPassword, "10.0.0.1", 600s).outcome,
              admin::LoginOutcome::kRefused);
    EXPECT_EQ(stack_->PgCount("SELECT max(octet_length(username)) FROM eventlog.console_login_failure"), 150);

    // Least privilege: the API role reaches the administrators only through its four functions; the setting it
    // gets is the hash without its digest. The admin role reads no table either.
    const std::string setting(api.Exec("SELECT eventlog.console_login_setting('ada')").Get(0, 0));
    EXPECT_EQ(setting, admin::SettingOf(StoredHash("ada")));
    EXPECT_EQ(StoredHash("ada").find(setting + "$"), 0u);
    for (auto* session : {&api, &cli}) {
        for (const std::string sql : {
                 "SELECT password_hash FROM eventlog.console_admin",
                 "SELECT * FROM eventlog.console_session",
                 "SELECT * FROM eventlog.console_audit",
                 "DELETE FROM eventlog.console_login_failure",
                 "UPDATE eventlog.console_admin SET disabled = false",
             }) {
            try {
                session->Exec(sql);
                ADD_FAILURE() << "may run: " << sql;
            } catch (const ConfigError& e) {
                EXPECT_THAT(e.what(), HasSubstr("42501")) << sql;  // insufficient_privilege
            }
        }
    }
    for (const std::string sql :
         {"SELECT * FROM eventlog.console_admin_list()", "SELECT eventlog.console_admin_disable('ada')",
          "SELECT eventlog.console_admin_set_password('ada', '$argon2id$x')",
          "SELECT eventlog.console_admin_create('eve', '', '$argon2id$x')"}) {
        try {
            api.Exec(sql);
            ADD_FAILURE() << "the API role may run: " << sql;
        } catch (const ConfigError& e) {
            EXPECT_THAT(e.what(), HasSubstr("42501")) << sql;
        }
    }
}

TEST_F(AdminTest, ADisabledAdministratorCannotLogInAndLosesItsSessions) {
    auto cli = SessionIn("eventlog_admin");
    admin::CreateAdministrator(cli, "ada", "", kPassword);
    auto& api = stack_->Producer();
    const auto before = admin::Login(api, "ada", kPassword, "10.0.0.1", 600s);
    ASSERT_EQ(before.outcome, admin::LoginOutcome::kOk);
    ASSERT_TRUE(admin::DisableAdministrator(cli, "ada"));
    EXPECT_EQ(admin::SessionAdministrator(api, before.session_token, 600s), std::nullopt);
    EXPECT_EQ(admin::Login(api, "ada", kPassword, "10.0.0.1", 600s).outcome, admin::LoginOutcome::kRefused);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.console_session"), 0);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.console_audit WHERE action = 'login_failed' AND "
                              "details->>'reason' = 'disabled'"),
              1);
}

TEST_F(AdminTest, ANewPasswordEndsTheSessionsOfTheOldOne) {
    auto cli = SessionIn("eventlog_admin");
    admin::CreateAdministrator(cli, "ada", "", kPassword);
    auto& api = stack_->Producer();
    const auto before = admin::Login(api, "ada", kPassword, "10.0.0.1", 600s);
    ASSERT_EQ(before.outcome, admin::LoginOutcome::kOk);
    ASSERT_TRUE(admin::SetAdministratorPassword(cli, "ada", "a newer passphrase"));
    EXPECT_EQ(admin::SessionAdministrator(api, before.session_token, 600s), std::nullopt);
    EXPECT_EQ(admin::Login(api, "ada", kPassword, "10.0.0.1", 600s).outcome, admin::LoginOutcome::kRefused);
    EXPECT_EQ(admin::Login(api, "ada", "a newer passphrase", "10.0.0.1", 600s).outcome, admin::LoginOutcome::kOk);
}

TEST_F(AdminTest, FiveFailuresIn15MinutesThrottleTheUsernameAndTheClientAddress) {
    auto cli = SessionIn("eventlog_admin");
    admin::CreateAdministrator(cli, "ada", "", kPassword);
    admin::CreateAdministrator(cli, "grace", "", kPassword);
    auto& api = stack_->Producer();
    // Per username: five wrong passwords from five addresses, then even the right one from a sixth is throttled.
    for (int i = 0; i < admin::kMaxLoginFailures; ++i) {
        EXPECT_EQ(admin::Login(api, "ada", "wrong password!", "10.0.1." + std::to_string(i), 600s).outcome,
                  admin::LoginOutcome::kRefused);
    }
    EXPECT_EQ(admin::Login(api, "ada", kPassword, "10.0.1.99", 600s).outcome, admin::LoginOutcome::kThrottled);
    EXPECT_EQ(admin::Login(api, "grace", kPassword, "10.0.1.99", 600s).outcome, admin::LoginOutcome::kOk);

    // Per client address: five failures for five usernames from one address, then that address is throttled.
    for (int i = 0; i < admin::kMaxLoginFailures; ++i) {
        EXPECT_EQ(admin::Login(api, "user" + std::to_string(i), "wrong password!", "10.0.2.1", 600s).outcome,
                  admin::LoginOutcome::kRefused);
    }
    EXPECT_EQ(admin::Login(api, "grace", kPassword, "10.0.2.1", 600s).outcome, admin::LoginOutcome::kThrottled);
    EXPECT_EQ(admin::Login(api, "grace", kPassword, "10.0.2.2", 600s).outcome, admin::LoginOutcome::kOk);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.console_audit WHERE action = 'login_throttled'"), 2);

    // Failures older than the window no longer count: waiting 15 minutes is enough (throttled attempts add none).
    stack_->Pg().Exec(
        "UPDATE eventlog.console_login_failure SET failed_at = failed_at - interval '15 minutes 1 second'");
    EXPECT_EQ(admin::Login(api, "ada", kPassword, "10.0.2.1", 600s).outcome, admin::LoginOutcome::kOk);
    // The SQL holds the same numbers as the C++ constants.
    const std::string body(stack_->Pg().Exec("SELECT prosrc FROM pg_proc WHERE proname = 'console_login'").Get(0, 0));
    EXPECT_THAT(body, HasSubstr(">= " + std::to_string(admin::kMaxLoginFailures)));
    EXPECT_THAT(body, HasSubstr("interval '" + std::to_string(admin::kLoginFailureWindow.count()) + " minutes'"));
}

TEST_F(AdminTest, ASessionExpiresAfterItsIdleTimeAndEachUseExtendsIt) {
    auto cli = SessionIn("eventlog_admin");
    admin::CreateAdministrator(cli, "ada", "", kPassword);
    auto& api = stack_->Producer();
    const auto login = admin::Login(api, "ada", kPassword, "10.0.0.1", 600s);
    ASSERT_EQ(login.outcome, admin::LoginOutcome::kOk);
    // A use 500 s after the last one (of 600 s allowed) extends it; then 601 s without use ends it.
    stack_->Pg().Exec("UPDATE eventlog.console_session SET expires_at = now() + interval '100 seconds'");
    EXPECT_EQ(admin::SessionAdministrator(api, login.session_token, 600s), "ada");
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.console_session WHERE expires_at > now() + interval "
                              "'599 seconds'"),
              1);
    stack_->Pg().Exec("UPDATE eventlog.console_session SET expires_at = now() - interval '1 second'");
    EXPECT_EQ(admin::SessionAdministrator(api, login.session_token, 600s), std::nullopt);
    EXPECT_FALSE(admin::Logout(api, login.session_token, "10.0.0.1"));  // nothing live to end, nothing audited
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.console_audit WHERE action = 'logout'"), 0);
}

class AdminUpgradeTest : public StackTest {
protected:
    TestStack::Options StackOptions() override { return {.overrides = {}, .migrate = false}; }
};

// `eventlog migrate` on a database of the version before (0001-0018 applied, an API key and a dead letter in it)
// applies 0019 alone, keeps what was there, and the new functions work under the existing roles.
TEST_F(AdminUpgradeTest, MigrateAppliesTheConsoleMigrationToAnExistingDatabase) {
    auto& pg = stack_->Pg();
    pg.Exec(
        "CREATE SCHEMA IF NOT EXISTS eventlog; CREATE TABLE IF NOT EXISTS eventlog.schema_migrations (name text "
        "PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
    for (const auto& m : outbox::detail::EmbeddedMigrations()) {
        if (m.engine != "postgres" || m.name >= std::string_view("0019")) continue;
        pg::Transaction tx(pg);
        tx.Exec(m.sql);
        tx.Exec("INSERT INTO eventlog.schema_migrations (name) VALUES ($1)", {std::string(m.name)});
        tx.Commit();
    }
    pg.Exec("SELECT eventlog.api_key_create('before', decode(repeat('ab', 32), 'hex'))");
    ASSERT_EQ(stack_->PgCount("SELECT count(*) FROM pg_tables WHERE tablename = 'console_admin'"), 0);

    const auto report = outbox::MigratePostgres(pg);
    // 0020 (the console's pages) comes along.
    EXPECT_THAT(report.applied, ElementsAre("postgres/0019_admin_console", "postgres/0020_console_pages"));
    EXPECT_EQ(report.already_applied, 18);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.api_key WHERE name = 'before'"), 1);
    admin::CreateAdministrator(pg, "ada", "", kPassword);
    EXPECT_EQ(admin::Login(stack_->Producer(), "ada", kPassword, "10.0.0.1", 600s).outcome, admin::LoginOutcome::kOk);
    EXPECT_THAT(outbox::MigratePostgres(pg).applied, ::testing::IsEmpty());
}

}  // namespace
}  // namespace eventlog
