// The admin console's sign-in over HTTP against a real PostgreSQL (label db; docs/admin-console.md): the API server
// in process, as a role holding only eventlog_producer, with the console's routes on its listener. What a browser
// would do, request by request: the login form (labels, a hidden CSRF token, a CSRF cookie), a post without the
// token (403), a wrong password (refused, audited), the right one (a session cookie with its flags, /admin/ shows
// who is signed in), sign-out (403 without its token; then the session is gone), throttling after 5 failures (429,
// said on the page), the Secure flag only when a trusted proxy says the request came over TLS, the CSP.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <eventlog/admin/administrators.hpp>
#include <eventlog/http/api.hpp>
#include <eventlog/http/console.hpp>
#include <eventlog/http/server.hpp>
#include <eventlog/pg/pool.hpp>
#include <memory>
#include <regex>
#include <string>

#include "support/http_client.hpp"
#include "support/test_env.hpp"

namespace eventlog {
namespace {

using ::testing::HasSubstr;
using testing::HttpAnswer;
using testing::HttpRequest;
using ::testing::Not;
using testing::StackTest;

constexpr const char* kSecretKey = "console-test-secret-5f1c9a7e3b2d4c6e8a0b1d3f5e7c9a2b4d6f8e0c1a3b5d7f9e2c4a6";
constexpr std::string_view kPassword = "correct horse battery staple";

class ConsoleTest : public StackTest {
protected:
    void SetUp() override {
        StackTest::SetUp();
        if (HasFatalFailure()) return;
        producer_ = stack_->DatabaseName() + "_console_api";
        stack_->Pg().Exec("CREATE ROLE " + producer_ + " LOGIN PASSWORD 'pw' IN ROLE eventlog_producer");
        stack_->Pg().Exec("GRANT CONNECT ON DATABASE " + stack_->DatabaseName() + " TO " + producer_);
        admin::CreateAdministrator(stack_->Pg(), "ada", "", kPassword);
    }

    void TearDown() override {
        if (server_) {
            server_->Stop();
            server_->Wait();
            server_.reset();
        }
        pool_.reset();
        if (stack_ && !producer_.empty()) {
            try {
                stack_->Pg().Exec("DROP OWNED BY " + producer_ + " CASCADE");
                stack_->Pg().Exec("DROP ROLE IF EXISTS " + producer_);
            } catch (const std::exception& e) {
                ADD_FAILURE() << "cleanup of role " << producer_ << ": " << e.what();
            }
        }
        StackTest::TearDown();
    }

    void StartServer(std::vector<std::string> trusted_proxies = {}) {
        http::ServeSettings settings;
        settings.secret_key = kSecretKey;
        settings.clickhouse = std::nullopt;
        settings.server.port = 0;
        settings.server.io_threads = 1;
        settings.server.worker_threads = 2;
        settings.trusted_proxies = std::move(trusted_proxies);
        pg::PoolOptions pool_options;
        auto postgres = stack_->Config().postgres;
        postgres.user = producer_;
        postgres.password = "pw";
        pool_options.connect.conninfo = postgres.ConnInfo();
        pool_options.max_size = 2;
        pool_ = std::make_unique<pg::Pool>(pool_options);
        server_ = std::make_unique<http::Server>(settings.server,
                                                 http::MakeApiRouter(*pool_, settings, [] { return false; }));
        server_->Start();
    }

    HttpAnswer Get(const std::string& path, const std::string& cookies = "",
                   std::vector<std::pair<std::string, std::string>> headers = {}) {
        if (!cookies.empty()) headers.emplace_back("Cookie", cookies);
        return HttpRequest(server_->Port(), "GET", path, {}, headers);
    }

    HttpAnswer Post(const std::string& path, const std::string& form, const std::string& cookies,
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
        headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
        if (!cookies.empty()) headers.emplace_back("Cookie", cookies);
        return HttpRequest(server_->Port(), "POST", path, form, headers);
    }

    /// The login form's CSRF cookie ("eventlog_csrf=...") and hidden token, as a browser would keep them.
    struct LoginForm {
        std::string cookie;
        std::string token;
    };
    LoginForm OpenLoginForm(std::vector<std::pair<std::string, std::string>> headers = {}) {
        const auto form = Get("/admin/login/", "", std::move(headers));
        EXPECT_EQ(form.status, 200);
        LoginForm out;
        std::smatch m;
        const std::string set_cookie = form.headers.count("set-cookie") ? form.headers.at("set-cookie") : "";
        if (std::regex_search(set_cookie, m, std::regex("^(eventlog_csrf=[A-Za-z0-9_-]{43});"))) out.cookie = m[1];
        if (std::regex_search(form.body, m, std::regex(R"re(name="csrf_token" value="([0-9a-f]{64})")re"))) {
            out.token = m[1];
        }
        EXPECT_FALSE(out.cookie.empty()) << set_cookie;
        EXPECT_FALSE(out.token.empty()) << form.body;
        return out;
    }

    /// Signs in as ada; returns the session cookie ("eventlog_session=...").
    std::string SignIn() {
        const auto form = OpenLoginForm();
        const auto answer =
            Post("/admin/login/", "csrf_token=" + form.token + "&username=ada&password=correct+horse+battery+staple",
                 form.cookie);
        EXPECT_EQ(answer.status, 303) << answer.body;
        std::smatch m;
        const std::string set_cookie = answer.headers.count("set-cookie") ? answer.headers.at("set-cookie") : "";
        EXPECT_TRUE(std::regex_search(set_cookie, m, std::regex("^(eventlog_session=[A-Za-z0-9_-]{43});")))
            << set_cookie;
        return m.empty() ? std::string() : std::string(m[1]);
    }

    std::int64_t Audited(const std::string& action) {
        return stack_->PgCount("SELECT count(*) FROM eventlog.console_audit WHERE action = '" + action + "'");
    }

    std::string producer_;
    std::unique_ptr<pg::Pool> pool_;
    std::unique_ptr<http::Server> server_;
};

TEST_F(ConsoleTest, TheLoginFormHasLabelledFieldsACsrfTokenAndAStrictPolicy) {
    StartServer();
    const auto form = Get("/admin/login/");
    ASSERT_EQ(form.status, 200);
    EXPECT_EQ(form.headers.at("content-type"), "text/html; charset=utf-8");
    EXPECT_THAT(form.body, HasSubstr(R"(<label for="username">Username</label>)"));
    EXPECT_THAT(form.body, HasSubstr(R"(id="username" name="username")"));
    EXPECT_THAT(form.body, HasSubstr(R"(<label for="password">Password</label>)"));
    EXPECT_THAT(form.body, HasSubstr(R"(type="password" id="password" name="password")"));
    EXPECT_THAT(form.body, HasSubstr(R"(<input type="hidden" name="csrf_token" value=")"));
    EXPECT_THAT(form.body, HasSubstr(R"(<link rel="stylesheet" href="/admin/static/console.css">)"));
    EXPECT_THAT(form.body, Not(HasSubstr("<script")));
    EXPECT_THAT(form.body, Not(HasSubstr("http://")));
    EXPECT_THAT(form.body, Not(HasSubstr("https://")));
    EXPECT_EQ(form.headers.at("content-security-policy"),
              "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
              "base-uri 'none'");
    EXPECT_EQ(form.headers.at("x-frame-options"), "DENY");
    EXPECT_THAT(form.headers.at("set-cookie"),
                ::testing::MatchesRegex("eventlog_csrf=[A-Za-z0-9_-]{43}; Path=/admin/; HttpOnly; SameSite=Strict"));

    const auto css = Get("/admin/static/console.css");
    EXPECT_EQ(css.status, 200);
    EXPECT_EQ(css.headers.at("content-type"), "text/css; charset=utf-8");
    EXPECT_THAT(css.body, Not(HasSubstr("url(")));  // nothing fetched from elsewhere
    EXPECT_THAT(css.body, HasSubstr("@media (max-width: 400px)"));

    // Without a trailing slash the console's paths are not found, as the API's paths with one are not.
    EXPECT_EQ(Get("/admin/login").status, 404);
    EXPECT_EQ(Get("/healthz/").status, 404);
}

TEST_F(ConsoleTest, SigningInSetsASessionCookieWithItsFlagsAndTheConsoleSaysWhoIsSignedIn) {
    StartServer();
    const auto anonymous = Get("/admin/");
    EXPECT_EQ(anonymous.status, 303);
    EXPECT_EQ(anonymous.headers.at("location"), "/admin/login/");

    const auto form = OpenLoginForm();
    const auto answer =
        Post("/admin/login/", "csrf_token=" + form.token + "&username=ada&password=correct+horse+battery+staple",
             form.cookie);
    ASSERT_EQ(answer.status, 303) << answer.body;
    EXPECT_EQ(answer.headers.at("location"), "/admin/");
    EXPECT_THAT(answer.headers.at("set-cookie"),
                ::testing::MatchesRegex("eventlog_session=[A-Za-z0-9_-]{43}; Path=/admin/; HttpOnly; SameSite=Strict"));
    const std::string session = answer.headers.at("set-cookie").substr(0, answer.headers.at("set-cookie").find(';'));

    const auto home = Get("/admin/", session);
    ASSERT_EQ(home.status, 200);
    EXPECT_THAT(home.body, HasSubstr("Signed in as <strong>ada</strong>"));
    EXPECT_THAT(home.body, HasSubstr(R"(<form method="post" action="/admin/logout/">)"));
    EXPECT_EQ(Get("/admin/login/", session).status, 303);  // signed in: the form sends you to the console
    EXPECT_EQ(Audited("login"), 1);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.console_audit WHERE action = 'login' AND "
                              "client_address = '127.0.0.1'"),
              1);
}

TEST_F(ConsoleTest, AWrongPasswordAUnknownUserAndADisabledAdministratorAreRefusedOnTheForm) {
    StartServer();
    const auto form = OpenLoginForm();
    for (const std::string credentials : {"username=ada&password=correct+horse+battery+stapler",
                                          "username=nobody&password=correct+horse+battery+staple"}) {
        const auto answer = Post("/admin/login/", "csrf_token=" + form.token + "&" + credentials, form.cookie);
        EXPECT_EQ(answer.status, 200) << credentials;
        EXPECT_THAT(answer.body, HasSubstr("Please enter the correct username and password.")) << credentials;
        EXPECT_EQ(answer.headers.count("set-cookie"), 0u) << credentials;
    }
    admin::DisableAdministrator(stack_->Pg(), "ada");
    const auto disabled =
        Post("/admin/login/", "csrf_token=" + form.token + "&username=ada&password=correct+horse+battery+staple",
             form.cookie);
    EXPECT_EQ(disabled.status, 200);
    EXPECT_EQ(disabled.headers.count("set-cookie"), 0u);
    EXPECT_EQ(Audited("login_failed"), 3);
    EXPECT_EQ(Audited("login"), 0);
}

TEST_F(ConsoleTest, EveryStateChangingFormWithoutItsCsrfTokenIs403) {
    StartServer();
    const auto form = OpenLoginForm();
    const std::string good = "username=ada&password=correct+horse+battery+staple";
    // No token, a wrong token, the token without its cookie, and another cookie's token.
    EXPECT_EQ(Post("/admin/login/", good, form.cookie).status, 403);
    EXPECT_EQ(Post("/admin/login/", "csrf_token=" + std::string(64, 'a') + "&" + good, form.cookie).status, 403);
    EXPECT_EQ(Post("/admin/login/", "csrf_token=" + form.token + "&" + good, "").status, 403);
    const auto other = OpenLoginForm();
    EXPECT_EQ(Post("/admin/login/", "csrf_token=" + other.token + "&" + good, form.cookie).status, 403);
    EXPECT_EQ(Audited("login"), 0);
    EXPECT_EQ(Audited("login_failed"), 0);  // a forged post never reaches the password check

    const std::string session = SignIn();
    const auto home = Get("/admin/", session);
    std::smatch m;
    ASSERT_TRUE(std::regex_search(home.body, m, std::regex(R"re(name="csrf_token" value="([0-9a-f]{64})")re")));
    const std::string logout_token = m[1];
    EXPECT_NE(logout_token, form.token);
    EXPECT_EQ(Post("/admin/logout/", "", session).status, 403);
    EXPECT_EQ(Post("/admin/logout/", "csrf_token=" + form.token, session).status, 403);
    EXPECT_EQ(Get("/admin/", session).status, 200);  // still signed in

    const auto out = Post("/admin/logout/", "csrf_token=" + logout_token, session);
    EXPECT_EQ(out.status, 303);
    EXPECT_EQ(out.headers.at("location"), "/admin/login/");
    EXPECT_THAT(out.headers.at("set-cookie"),
                HasSubstr("eventlog_session=; Path=/admin/; HttpOnly; SameSite=Strict; Max-Age=0"));
    EXPECT_EQ(Get("/admin/", session).status, 303);  // the server forgot the session, not only the browser
    EXPECT_EQ(Audited("logout"), 1);
}

TEST_F(ConsoleTest, FiveFailuresThrottleWith429SaidOnThePage) {
    StartServer();
    const auto form = OpenLoginForm();
    for (int i = 0; i < 5; ++i) {
        EXPECT_EQ(
            Post("/admin/login/",
                 "csrf_token=" + form.token + "&username=ada&password=wrong+password+" + std::to_string(i), form.cookie)
                .status,
            200);
    }
    const auto throttled =
        Post("/admin/login/", "csrf_token=" + form.token + "&username=ada&password=correct+horse+battery+staple",
             form.cookie);
    EXPECT_EQ(throttled.status, 429);
    EXPECT_EQ(throttled.headers.at("retry-after"), "900");
    EXPECT_THAT(throttled.body, HasSubstr("Too many failed sign-ins"));
    EXPECT_THAT(throttled.body, HasSubstr("Wait 15 minutes"));
    EXPECT_EQ(throttled.headers.count("set-cookie"), 0u);
    EXPECT_EQ(Audited("login_throttled"), 1);
}

TEST_F(ConsoleTest, BehindATrustedProxyTheForwardedAddressIsThrottledAndTlsMakesTheCookieSecure) {
    StartServer({"127.0.0.1"});
    const std::vector<std::pair<std::string, std::string>> tls = {{"X-Forwarded-For", "198.51.100.7"},
                                                                  {"X-Forwarded-Proto", "https"}};
    const auto form = OpenLoginForm(tls);
    const auto form_again = Get("/admin/login/", "", tls);
    EXPECT_THAT(form_again.headers.at("set-cookie"), HasSubstr("; Secure"));
    const auto answer =
        Post("/admin/login/", "csrf_token=" + form.token + "&username=ada&password=correct+horse+battery+staple",
             form.cookie, tls);
    ASSERT_EQ(answer.status, 303);
    EXPECT_THAT(answer.headers.at("set-cookie"), HasSubstr("; HttpOnly; SameSite=Strict; Secure"));
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.console_audit WHERE action = 'login' AND client_address "
                              "= '198.51.100.7'"),
              1);
    // Plain HTTP through the same proxy: no Secure flag.
    const auto plain = Get("/admin/login/", "", {{"X-Forwarded-For", "198.51.100.7"}, {"X-Forwarded-Proto", "http"}});
    EXPECT_THAT(plain.headers.at("set-cookie"), Not(HasSubstr("Secure")));
}

TEST_F(ConsoleTest, AnUntrustedPeerCannotClaimAnotherAddressOrTls) {
    StartServer();  // no trusted proxy
    const std::vector<std::pair<std::string, std::string>> forged = {{"X-Forwarded-For", "203.0.113.9"},
                                                                     {"X-Forwarded-Proto", "https"}};
    const auto form = OpenLoginForm(forged);
    const auto again = Get("/admin/login/", "", forged);
    EXPECT_THAT(again.headers.at("set-cookie"), Not(HasSubstr("Secure")));
    Post("/admin/login/", "csrf_token=" + form.token + "&username=ada&password=wrong+password", form.cookie, forged);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.console_audit WHERE action = 'login_failed' AND "
                              "client_address = '127.0.0.1'"),
              1);
}

TEST_F(ConsoleTest, AnExpiredSessionSendsYouBackToTheLoginForm) {
    StartServer();
    const std::string session = SignIn();
    ASSERT_EQ(Get("/admin/", session).status, 200);
    stack_->Pg().Exec("UPDATE eventlog.console_session SET expires_at = now() - interval '1 second'");
    const auto expired = Get("/admin/", session);
    EXPECT_EQ(expired.status, 303);
    EXPECT_EQ(expired.headers.at("location"), "/admin/login/");
}

}  // namespace
}  // namespace eventlog
