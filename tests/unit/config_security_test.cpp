// Configuration security: secrets in URLs never leak into errors, a `.env` must be private and cannot
// redirect credentials from the environment, TLS settings reach the connections.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <eventlog/clickhouse/client.hpp>
#include <eventlog/core/config.hpp>
#include <eventlog/core/error.hpp>
#include <list>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace eventlog {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

/// Every character that has a meaning somewhere in a URL.
constexpr std::string_view kSpecials = ":/?#[]@!$&'()*+,;=% ";
/// Non-ASCII: two-, three- and four-byte UTF-8.
const std::string kNonAscii = "p\xc3\xa4ss\xe2\x82\xac\xf0\x9f\x98\x80";

std::string PercentEncode(std::string_view text) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~') {
            out.push_back(ch);
        } else {
            out.push_back('%');
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 0x0F]);
        }
    }
    return out;
}

/// The ConfigError message LoadConfig throws for `env`, or nullopt when it accepts it.
std::optional<std::string> ConfigErrorFor(const EnvMap& env) {
    try {
        LoadConfig(env);
    } catch (const ConfigError& e) {
        return std::string(e.what());
    }
    return std::nullopt;
}

TEST(UrlSecrets, PercentEncodedSpecialCharactersRoundTripExactly) {
    std::vector<std::string> secrets;
    for (const char c : kSpecials) secrets.push_back(std::string("pa") + c + "ss");
    secrets.emplace_back(kSpecials);
    secrets.push_back(kNonAscii);
    secrets.push_back(std::string(kSpecials) + kNonAscii + "%41%");
    for (const auto& secret : secrets) {
        SCOPED_TRACE("secret: " + secret);
        const std::string user = "u" + secret;
        const Config pg =
            LoadConfig({{"DATABASE_URL", "postgres://" + PercentEncode(user) + ":" + PercentEncode(secret) +
                                             "@db.example:5433/" + PercentEncode("db" + secret)}});
        EXPECT_EQ(pg.postgres.user, user);
        EXPECT_EQ(pg.postgres.password, secret);
        EXPECT_EQ(pg.postgres.database, "db" + secret);
        EXPECT_EQ(pg.postgres.host, "db.example");
        EXPECT_EQ(pg.postgres.port, 5433);

        const Config ch = LoadConfig({{"CLICKHOUSE_URI", "https://" + PercentEncode(user) + ":" +
                                                             PercentEncode(secret) + "@ch.example:8444/analytics"}});
        EXPECT_EQ(ch.clickhouse.user, user);
        EXPECT_EQ(ch.clickhouse.password, secret);
        EXPECT_EQ(ch.clickhouse.host, "ch.example");
        EXPECT_EQ(ch.clickhouse.port, 8444);
        EXPECT_EQ(ch.clickhouse.protocol, "https");
        EXPECT_EQ(ch.clickhouse.database, "analytics");
        EXPECT_EQ(clickhouse::OptionsFrom(ch.clickhouse).password, secret);

        const Config alice = LoadConfig({{"DATABASE_URL", "postgres://alice:" + PercentEncode(secret) + "@db/app"},
                                         {"CLICKHOUSE_URI", "http://alice:" + PercentEncode(secret) + "@ch/app"}});
        EXPECT_EQ(alice.postgres.password, secret);
        EXPECT_EQ(alice.clickhouse.password, secret);
        EXPECT_THAT(alice.postgres.Redacted(), Not(HasSubstr(secret)));
        EXPECT_THAT(alice.clickhouse.Redacted(), Not(HasSubstr(secret)));
        EXPECT_THAT(alice.clickhouse.BaseUrl(), Not(HasSubstr(secret)));
    }
}

TEST(UrlSecrets, PasswordWithSpecialCharactersIsQuotedInTheConnInfo) {
    const std::string secret = "a' b\\c=d";
    const Config c = LoadConfig({{"DATABASE_URL", "postgres://u:" + PercentEncode(secret) + "@h/d"}});
    EXPECT_EQ(c.postgres.ConnInfo(), "host='h' port=5432 user='u' dbname='d' password='a\\' b\\\\c=d'");
}

// A raw reserved character in a password splits the URL elsewhere than the user meant; whatever part the
// password lands in (port, path, query, fragment), no part of it may appear in an error or in Redacted().
TEST(UrlSecrets, RawSpecialCharactersNeverLeakAFragmentOfThePassword) {
    for (const char c : kSpecials) {
        for (const std::string& head : {std::string("Qx7"), std::string("1234")}) {
            const std::string tail = "Zk9";
            const std::string secret = head + c + tail;
            SCOPED_TRACE("secret: " + secret);
            for (const auto& [variable, url] :
                 {std::pair<std::string, std::string>{"DATABASE_URL", "postgres://alice:" + secret + "@db:5433/app"},
                  std::pair<std::string, std::string>{"CLICKHOUSE_URI", "http://alice:" + secret + "@ch:8123/app"}}) {
                SCOPED_TRACE(variable);
                try {
                    const Config config = LoadConfig({{variable, url}});
                    // Accepted: then it must have been understood exactly.
                    const bool pg = variable == "DATABASE_URL";
                    EXPECT_EQ(pg ? config.postgres.password : config.clickhouse.password, secret);
                    EXPECT_EQ(pg ? config.postgres.host : config.clickhouse.host, pg ? "db" : "ch");
                    const std::string redacted = pg ? config.postgres.Redacted() : config.clickhouse.Redacted();
                    EXPECT_THAT(redacted, Not(HasSubstr(head)));
                    EXPECT_THAT(redacted, Not(HasSubstr(tail)));
                } catch (const ConfigError& e) {
                    EXPECT_THAT(e.what(), HasSubstr(variable));
                    EXPECT_THAT(e.what(), Not(HasSubstr(head)));
                    EXPECT_THAT(e.what(), Not(HasSubstr(tail)));
                }
            }
        }
    }
}

TEST(UrlSecrets, RawSlashQuestionMarkOrHashInThePasswordIsAClearError) {
    for (const char c : std::string_view("/?#")) {
        const std::string url = std::string("http://default:S3cr") + c + "et@h/db";
        const auto message = ConfigErrorFor({{"CLICKHOUSE_URI", url}});
        ASSERT_TRUE(message.has_value()) << url;
        EXPECT_THAT(*message, HasSubstr("CLICKHOUSE_URI"));
        EXPECT_THAT(*message, HasSubstr("percent-encoded"));
        EXPECT_THAT(*message, Not(HasSubstr("S3cr")));
        EXPECT_THAT(*message, Not(HasSubstr("et@")));
        const auto pg_message = ConfigErrorFor({{"DATABASE_URL", std::string("postgres://u:S3cr") + c + "et@h/db"}});
        ASSERT_TRUE(pg_message.has_value()) << url;
        EXPECT_THAT(*pg_message, HasSubstr("DATABASE_URL"));
        EXPECT_THAT(*pg_message, Not(HasSubstr("S3cr")));
    }
}

TEST(UrlSecrets, NoConfigErrorEchoesASecret) {
    const std::string secret = "Hunter2Secret";
    const std::vector<EnvMap> bad = {
        {{"DATABASE_URL", "mysql://u:" + secret + "@h/db"}},
        {{"DATABASE_URL", "postgres://u:" + secret + "@h:notaport/db"}},
        {{"DATABASE_URL", "postgres://u:" + secret + "@h:99999/db"}},
        {{"DATABASE_URL", "postgres://u:" + secret + "@/db"}},
        {{"DATABASE_URL", "postgres://u:" + secret + "@h/db?sslmode=sometimes"}},
        {{"DATABASE_URL", "postgres://u:" + secret + "@h/db?bad key=1"}},
        {{"DATABASE_URL", "postgres://u:" + secret + " @h/db"}},
        {{"DATABASE_URL", "u:" + secret + "@h/db"}},
        {{"CLICKHOUSE_URI", "ftp://u:" + secret + "@h/db"}},
        {{"CLICKHOUSE_URI", "http://u:" + secret + "@h:0/db"}},
        {{"CLICKHOUSE_URI", "http://u:" + secret + "@h/bad-db"}},
        {{"CLICKHOUSE_URI", "http://u:" + secret + "@h/db"}, {"CLICKHOUSE_CA_FILE", "/nonexistent/ca.pem"}},
        {{"SECRET_KEY", secret}, {"DEBUG", "maybe"}},
        {{"POSTGRES_PASSWORD", secret}, {"POSTGRES_PORT", "x"}},
        {{"CLICKHOUSE_PASSWORD", secret}, {"CLICKHOUSE_PORT", "x"}},
    };
    for (const auto& env : bad) {
        const auto message = ConfigErrorFor(env);
        ASSERT_TRUE(message.has_value()) << env.begin()->second;
        EXPECT_THAT(*message, Not(HasSubstr("Hunter"))) << *message;
        EXPECT_THAT(*message, Not(HasSubstr("Secret"))) << *message;
    }
}

// --- .env --------------------------------------------------------------------------------------------------

/// A private temporary directory, removed with its files.
class TempDir {
public:
    TempDir() {
        char templ[] = "/tmp/eventlog-config-test-XXXXXX";
        if (::mkdtemp(templ) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = templ;
    }
    ~TempDir() {
        for (const auto& f : files_) ::unlink(f.c_str());
        ::rmdir(path_.c_str());
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    /// Writes `name` with `text` and `mode`; returns its path.
    std::string Write(const std::string& name, const std::string& text, mode_t mode = 0600) {
        const std::string file = path_ + "/" + name;
        std::FILE* f = std::fopen(file.c_str(), "w");
        if (f == nullptr) throw std::runtime_error("cannot write " + file);
        std::fputs(text.c_str(), f);
        std::fclose(f);
        ::chmod(file.c_str(), mode);
        files_.push_back(file);
        return file;
    }

private:
    std::string path_;
    std::vector<std::string> files_;
};

/// Sets (or, with nullopt, removes) an environment variable for its lifetime.
class ScopedEnv {
public:
    ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value) {
            ::setenv(name, value->c_str(), 1);
        } else {
            ::unsetenv(name);
        }
    }
    ~ScopedEnv() {
        if (old_) {
            ::setenv(name_, old_->c_str(), 1);
        } else {
            ::unsetenv(name_);
        }
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    const char* name_;
    std::optional<std::string> old_;
};

/// Clears every connection variable from the process environment for the test's lifetime.
class CleanConnectionEnvironment {
public:
    CleanConnectionEnvironment() {
        for (const char* name : kPostgresConnectionVariables) saved_.emplace_back(name, std::nullopt);
        for (const char* name : kClickHouseConnectionVariables) saved_.emplace_back(name, std::nullopt);
    }

private:
    std::list<ScopedEnv> saved_;
};

std::string ReadError(const std::string& path) {
    try {
        ReadEnvironment(path);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "no error";
}

TEST(Dotenv, PrivateFileIsRead) {
    const CleanConnectionEnvironment clean;
    TempDir dir;
    const auto path = dir.Write(".env", "CLICKHOUSE_URI=http://ch.example:8123/db\n", 0600);
    EXPECT_EQ(ReadEnvironment(path).at("CLICKHOUSE_URI"), "http://ch.example:8123/db");
    const auto readable = dir.Write("readable.env", "ENVIRONMENT=x\n", 0644);
    EXPECT_EQ(ReadEnvironment(readable).at("ENVIRONMENT"), "x");
}

// Issue 20: a file other users can read must not hold a secret: refused, naming the variables but no value. The same
// file with mode 600 is read; a readable file without secrets is read.
TEST(Dotenv, AFileReadableByOthersThatHoldsASecretIsRefused) {
    const CleanConnectionEnvironment clean;
    TempDir dir;
    const std::string text =
        "SECRET_KEY=k3y-v4lue\nCLICKHOUSE_PASSWORD=pw-v4lue\nDATABASE_URL=postgres://u:db-v4lue@127.0.0.1/x\n"
        "ENVIRONMENT=prod\n";
    for (const mode_t mode : {0644, 0640, 0604}) {
        const auto path = dir.Write("readable.env", text, mode);
        const auto message = ReadError(path);
        EXPECT_THAT(message, HasSubstr("holds secrets (CLICKHOUSE_PASSWORD, DATABASE_URL, SECRET_KEY)")) << mode;
        EXPECT_THAT(message, HasSubstr("readable by group or others"));
        EXPECT_THAT(message, ::testing::Not(HasSubstr("v4lue")));
    }
    const auto private_file = dir.Write("private.env", text, 0600);
    EXPECT_EQ(ReadEnvironment(private_file).at("ENVIRONMENT"), "prod");
    const auto no_password = dir.Write("plain.env", "DATABASE_URL=postgres://u@127.0.0.1/x\nENVIRONMENT=x\n", 0644);
    EXPECT_EQ(ReadEnvironment(no_password).at("ENVIRONMENT"), "x");
}

TEST(Dotenv, MissingFileAndDevNullAreEmpty) {
    TempDir dir;
    EXPECT_NO_THROW(ReadEnvironment("/nonexistent-dir/.env"));
    EXPECT_NO_THROW(ReadEnvironment("/dev/null"));
    EXPECT_NO_THROW(ReadEnvironment(""));
}

TEST(Dotenv, FileWritableByOthersIsRefused) {
    TempDir dir;
    const auto path = dir.Write(".env", "CLICKHOUSE_URI=http://attacker.example:8123/db\n", 0666);
    const auto message = ReadError(path);
    EXPECT_THAT(message, HasSubstr(path));
    EXPECT_THAT(message, HasSubstr("writable by group or others"));
    const auto group = dir.Write("group.env", "ENVIRONMENT=x\n", 0620);
    EXPECT_THAT(ReadError(group), HasSubstr("writable by group or others"));
}

TEST(Dotenv, FileOwnedByAnotherUserIsRefused) {
    TempDir dir;
    const auto path = dir.Write(".env", "CLICKHOUSE_URI=http://attacker.example:8123/db\n", 0600);
    if (::geteuid() != 0) {
        GTEST_SKIP() << "not root: cannot give a file to another user here; the ownership check runs as root";
    }
    const passwd* nobody = ::getpwnam("nobody");
    ASSERT_NE(nobody, nullptr) << "no user 'nobody'";
    ASSERT_EQ(::chown(path.c_str(), nobody->pw_uid, nobody->pw_gid), 0);
    const auto message = ReadError(path);
    EXPECT_THAT(message, HasSubstr(path));
    EXPECT_THAT(message, HasSubstr("owned by uid " + std::to_string(nobody->pw_uid)));
}

TEST(Dotenv, EnvironmentPasswordIsNeverSentToAHostFromTheFile) {
    const CleanConnectionEnvironment clean;
    const ScopedEnv password("CLICKHOUSE_PASSWORD", "env-secret");
    TempDir dir;
    const auto path = dir.Write(".env", "CLICKHOUSE_URI=http://attacker.example:8123/default\n", 0600);
    std::vector<std::string> ignored;
    const Config c = LoadConfig(ReadEnvironment(path, &ignored));
    EXPECT_NE(c.clickhouse.host, "attacker.example");
    EXPECT_FALSE(c.clickhouse.host == "attacker.example" && c.clickhouse.password == "env-secret");
    EXPECT_EQ(c.clickhouse.password, "env-secret");  // with the environment's (default) host
    EXPECT_THAT(ignored, ::testing::ElementsAre("CLICKHOUSE_URI"));
}

TEST(Dotenv, FilePasswordIsNeverSentToAHostFromTheEnvironment) {
    const CleanConnectionEnvironment clean;
    const ScopedEnv host("CLICKHOUSE_HOST", "ch.internal");
    const ScopedEnv url("DATABASE_URL", "postgres://relay@pg.internal/app");
    TempDir dir;
    const auto path =
        dir.Write(".env", "CLICKHOUSE_PASSWORD=file-secret\nPOSTGRES_PASSWORD=file-pg\nENVIRONMENT=staging\n", 0600);
    const Config c = LoadConfig(ReadEnvironment(path));
    EXPECT_EQ(c.clickhouse.host, "ch.internal");
    EXPECT_EQ(c.clickhouse.password, "");
    EXPECT_EQ(c.postgres.host, "pg.internal");
    EXPECT_EQ(c.postgres.password, "");
    EXPECT_EQ(c.environment, "staging");  // other variables still come from the file
}

TEST(Dotenv, PostgresEnvironmentPasswordIsNeverSentToAUrlFromTheFile) {
    const CleanConnectionEnvironment clean;
    const ScopedEnv password("POSTGRES_PASSWORD", "env-pg-secret");
    TempDir dir;
    const auto path = dir.Write(".env", "DATABASE_URL=postgres://attacker.example/app\n", 0600);
    const Config c = LoadConfig(ReadEnvironment(path));
    EXPECT_NE(c.postgres.host, "attacker.example");
}

TEST(UrlCredentials, CredentialsInTheUriWinOverTheParts) {
    const Config c = LoadConfig({{"CLICKHOUSE_URI", "http://alice:from-uri@ch:8123/db"},
                                 {"CLICKHOUSE_USER", "bob"},
                                 {"CLICKHOUSE_PASSWORD", "from-part"}});
    EXPECT_EQ(c.clickhouse.user, "alice");
    EXPECT_EQ(c.clickhouse.password, "from-uri");
    const Config no_userinfo =
        LoadConfig({{"CLICKHOUSE_URI", "http://ch:8123/db"}, {"CLICKHOUSE_PASSWORD", "same-source"}});
    EXPECT_EQ(no_userinfo.clickhouse.password, "same-source");
    const Config pg = LoadConfig({{"DATABASE_URL", "postgres://alice@pg/db"}, {"POSTGRES_PASSWORD", "part"}});
    EXPECT_EQ(pg.postgres.password, "");
}

TEST(Dotenv, EmptyValueFollowedByACommentIsEmpty) {
    const EnvMap env =
        ParseDotenv("SECRET_KEY=                    # never logged\nA=x # note\nB='#not a comment'\nC=#x\n");
    EXPECT_EQ(env.at("SECRET_KEY"), "");
    EXPECT_EQ(env.at("A"), "x");
    EXPECT_EQ(env.at("B"), "#not a comment");
    EXPECT_EQ(env.at("C"), "#x");
}

TEST(Dotenv, TheExampleFileLoadsAsTheDefaults) {
    std::string source = __FILE__;
    source = source.substr(0, source.rfind("/tests/unit/"));
    std::FILE* f = std::fopen((source + "/.env.example").c_str(), "r");
    ASSERT_NE(f, nullptr) << source << "/.env.example";
    std::string text;
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, f)) > 0;) text.append(buffer, n);
    std::fclose(f);
    const EnvMap env = ParseDotenv(text);
    const Config c = LoadConfig(env);
    EXPECT_EQ(c.secret_key, "");
    EXPECT_EQ(c.postgres.sslmode, "");
    EXPECT_EQ(c.clickhouse.ca_file, "");
    EXPECT_EQ(c.sentry_environment, c.environment);
    EXPECT_EQ(c.postgres.ConnInfo(), LoadConfig({}).postgres.ConnInfo());
}

// --- TLS -----------------------------------------------------------------------------------------------------

TEST(Tls, PostgresSslSettingsReachTheConnInfo) {
    TempDir dir;
    const auto ca = dir.Write("pg-ca.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
    const Config c =
        LoadConfig({{"POSTGRES_HOST", "pg"}, {"POSTGRES_SSLMODE", "verify-full"}, {"POSTGRES_SSLROOTCERT", ca}});
    EXPECT_EQ(c.postgres.ConnInfo(),
              "host='pg' port=5432 user='eventlog' dbname='eventlog' sslmode='verify-full' "
              "sslrootcert='" +
                  ca + "'");
    const Config with_url = LoadConfig(
        {{"DATABASE_URL", "postgres://u@pg/db?sslrootcert=" + PercentEncode(ca)}, {"POSTGRES_SSLMODE", "verify-full"}});
    EXPECT_EQ(with_url.postgres.ConnInfo(),
              "host='pg' port=5432 user='u' dbname='db' sslmode='verify-full' sslrootcert='" + ca + "'");
    EXPECT_THAT(ConfigErrorFor({{"POSTGRES_SSLROOTCERT", "/nonexistent/ca.pem"}}).value_or(""),
                HasSubstr("POSTGRES_SSLROOTCERT"));
    EXPECT_EQ(LoadConfig({{"POSTGRES_SSLROOTCERT", "system"}}).postgres.sslrootcert, "system");
}

TEST(Tls, DatabaseUrlSslmodeWinsOverPostgresSslmode) {
    const Config c =
        LoadConfig({{"DATABASE_URL", "postgres://u@pg/db?sslmode=require&application_name=a%20host%3Devil"},
                    {"POSTGRES_SSLMODE", "verify-full"}});
    EXPECT_EQ(c.postgres.sslmode, "require");
    EXPECT_EQ(c.postgres.ConnInfo(),
              "host='pg' port=5432 user='u' dbname='db' sslmode='require' application_name='a host=evil'");
}

TEST(Tls, BadSslmodeNamesTheVariable) {
    EXPECT_THAT(ConfigErrorFor({{"POSTGRES_SSLMODE", "sometimes"}}).value_or(""), HasSubstr("POSTGRES_SSLMODE"));
    EXPECT_THAT(ConfigErrorFor({{"DATABASE_URL", "postgres://h/db?sslmode=sometimes"}}).value_or(""),
                HasSubstr("DATABASE_URL"));
}

TEST(Tls, ClickHouseCaFileReachesTheClientOptions) {
    TempDir dir;
    const auto ca = dir.Write("ca.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
    const Config c = LoadConfig({{"CLICKHOUSE_URI", "https://ch.example/db"}, {"CLICKHOUSE_CA_FILE", ca}});
    EXPECT_EQ(c.clickhouse.port, 8443);
    EXPECT_EQ(c.clickhouse.ca_file, ca);
    const auto options = clickhouse::OptionsFrom(c.clickhouse);
    EXPECT_EQ(options.ca_file, ca);
    EXPECT_EQ(options.base_url, "https://ch.example:8443");
}

TEST(Tls, ClickHouseCaFileMustExistAndNeedsHttps) {
    TempDir dir;
    const auto ca = dir.Write("ca.pem", "x\n", 0644);
    EXPECT_THAT(
        ConfigErrorFor({{"CLICKHOUSE_PROTOCOL", "https"}, {"CLICKHOUSE_CA_FILE", "/nonexistent/ca.pem"}}).value_or(""),
        HasSubstr("CLICKHOUSE_CA_FILE"));
    EXPECT_THAT(ConfigErrorFor({{"CLICKHOUSE_URI", "http://ch/db"}, {"CLICKHOUSE_CA_FILE", ca}}).value_or(""),
                HasSubstr("https"));
}

TEST(Urls, Ipv6HostsKeepTheirBrackets) {
    const Config c = LoadConfig({{"CLICKHOUSE_URI", "http://[::1]:8123/db"}, {"DATABASE_URL", "postgres://[::1]/db"}});
    EXPECT_EQ(c.clickhouse.host, "::1");
    EXPECT_EQ(c.clickhouse.BaseUrl(), "http://[::1]:8123");
    EXPECT_EQ(c.postgres.host, "::1");
}

// libpq's multi-host URL (failover): the first host is the URL's, the lists reach libpq as host= and port= after it.
TEST(Urls, SeveralPostgresHostsBecomeLibpqsHostAndPortLists) {
    const std::string secret = "S3cret,with@comma";
    const Config c = LoadConfig({{"DATABASE_URL", "postgres://alice:" + PercentEncode(secret) +
                                                      "@db1:5433,db2,[::1]:5435/app?target_session_attrs=read-write"}});
    EXPECT_EQ(c.postgres.host, "db1");
    EXPECT_EQ(c.postgres.port, 5433);
    EXPECT_EQ(c.postgres.user, "alice");
    EXPECT_EQ(c.postgres.password, secret);
    EXPECT_EQ(c.postgres.database, "app");
    using Option = std::pair<std::string, std::string>;
    EXPECT_EQ(c.postgres.options,
              (std::vector<Option>{
                  {"target_session_attrs", "read-write"}, {"host", "db1,db2,::1"}, {"port", "5433,5432,5435"}}));
    const std::string conninfo = c.postgres.ConnInfo();
    EXPECT_LT(conninfo.find("host='db1' "), conninfo.find("host='db1,db2,::1'")) << "the lists must come last to win";
    EXPECT_NE(conninfo.find("port='5433,5432,5435'"), std::string::npos);
}

TEST(Urls, ABadHostListIsAClearErrorWithoutTheSecret) {
    const std::string secret = "S3cretValue";
    for (const std::string authority : {"db1:5433,:5434", "db1,db2:99999", "db1,db2:x", "db1,,db2"}) {
        const auto message =
            ConfigErrorFor({{"DATABASE_URL", "postgres://alice:" + secret + "@" + authority + "/app"}});
        ASSERT_TRUE(message.has_value()) << authority;
        EXPECT_THAT(*message, HasSubstr("DATABASE_URL: expected a list of host:port")) << authority;
        EXPECT_THAT(*message, Not(HasSubstr(secret))) << authority;
    }
}

}  // namespace
}  // namespace eventlog
