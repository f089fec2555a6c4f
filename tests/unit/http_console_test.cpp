// The admin console's request parsing without a server: who sent a request (trusted proxies only), form bodies,
// cookies, HTML escaping, and the settings that configure it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <eventlog/core/config.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/http/api.hpp>
#include <eventlog/http/console.hpp>

namespace eventlog::http {
namespace {

Request From(std::string peer, std::map<std::string, std::string> headers = {}) {
    Request r;
    r.client_address = std::move(peer);
    r.headers = std::move(headers);
    return r;
}

TEST(ConsoleOriginTest, OnlyATrustedProxySaysWhoTheClientIsAndWhetherItUsedTls) {
    const std::vector<std::string> proxies = {"10.0.0.2", "::1"};
    const auto direct =
        OriginOf(From("192.0.2.1", {{"x-forwarded-for", "198.51.100.7"}, {"x-forwarded-proto", "https"}}), proxies);
    EXPECT_EQ(direct.address, "192.0.2.1");
    EXPECT_FALSE(direct.secure);

    // The last X-Forwarded-For entry is the one the proxy added; earlier ones are the client's own claims.
    const auto proxied = OriginOf(
        From("10.0.0.2", {{"x-forwarded-for", "203.0.113.5, 198.51.100.7"}, {"x-forwarded-proto", "HTTPS"}}), proxies);
    EXPECT_EQ(proxied.address, "198.51.100.7");
    EXPECT_TRUE(proxied.secure);
    const auto plain = OriginOf(From("::1", {{"x-forwarded-proto", "http"}}), proxies);
    EXPECT_EQ(plain.address, "::1");
    EXPECT_FALSE(plain.secure);
    EXPECT_EQ(OriginOf(From(""), proxies).address, "unknown");
}

TEST(ConsoleFormTest, DecodesUrlEncodedFields) {
    const auto form = ParseForm("username=ada+lovelace&password=p%40ss%2Bw%C3%B6rd&csrf_token=ab&empty=&flag&bad=%zz");
    EXPECT_EQ(form.at("username"), "ada lovelace");
    EXPECT_EQ(form.at("password"), "p@ss+w\xC3\xB6rd");
    EXPECT_EQ(form.at("csrf_token"), "ab");
    EXPECT_EQ(form.at("empty"), "");
    EXPECT_EQ(form.at("flag"), "");
    EXPECT_EQ(form.at("bad"), "%zz");
    EXPECT_EQ(ParseForm("a=1&a=2").at("a"), "1");
    EXPECT_TRUE(ParseForm("").empty());
}

TEST(ConsoleFormTest, ReadsOneCookieOfMany) {
    Request r;
    r.headers["cookie"] = "theme=dark; eventlog_session=abc; eventlog_csrf=def";
    EXPECT_EQ(CookieValue(r, "eventlog_session"), "abc");
    EXPECT_EQ(CookieValue(r, "eventlog_csrf"), "def");
    EXPECT_EQ(CookieValue(r, "theme"), "dark");
    EXPECT_EQ(CookieValue(r, "eventlog"), "");
    EXPECT_EQ(CookieValue(Request{}, "eventlog_session"), "");
}

TEST(ConsoleFormTest, EscapesHtml) {
    EXPECT_EQ(HtmlEscape(R"(<a href="x">O'Brien & co</a>)"),
              "&lt;a href=&quot;x&quot;&gt;O&#39;Brien &amp; co&lt;/a&gt;");
}

TEST(ConsoleSettingsTest, TrustedProxiesAndTheIdleTimeoutComeFromTheEnvironment) {
    EnvMap env = {{"SECRET_KEY", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
                  {"HTTP_TRUSTED_PROXY", " 10.0.0.2, ::1 ,"},
                  {"CONSOLE_SESSION_IDLE_SECONDS", "600"}};
    const auto s = LoadServeSettings(env, LoadConfig(env));
    EXPECT_EQ(s.trusted_proxies, (std::vector<std::string>{"10.0.0.2", "::1"}));
    EXPECT_EQ(s.console_idle_timeout, std::chrono::seconds(600));
    env["HTTP_TRUSTED_PROXY"] = "proxy.internal";
    try {
        LoadServeSettings(env, LoadConfig(env));
        ADD_FAILURE() << "a host name was taken as a trusted proxy";
    } catch (const ConfigError& e) {
        EXPECT_THAT(e.what(), ::testing::HasSubstr("HTTP_TRUSTED_PROXY"));
    }
    EXPECT_EQ(LoadServeSettings({{"SECRET_KEY", env["SECRET_KEY"]}}, LoadConfig(env)).console_idle_timeout,
              std::chrono::seconds(1800));
}

}  // namespace
}  // namespace eventlog::http
