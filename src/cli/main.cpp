// The `eventlog` command: migrate, relay, serve, apikey, createsuperuser, admin, status, emit, dlq.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <eventlog/clickhouse/client.hpp>
#include <eventlog/core/config.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/core/json.hpp>
#include <eventlog/core/text.hpp>
#include <eventlog/http/api.hpp>
#include <eventlog/http/api_keys.hpp>
#include <eventlog/http/ops.hpp>
#include <eventlog/http/server.hpp>
#include <eventlog/observability/log.hpp>
#include <eventlog/observability/metrics.hpp>
#include <eventlog/observability/sentry.hpp>
#include <eventlog/observability/tracing.hpp>
#include <eventlog/observability/version.hpp>
#include <eventlog/outbox/dead_letters.hpp>
#include <eventlog/outbox/migrate.hpp>
#include <eventlog/outbox/outbox.hpp>
#include <eventlog/pg/connection.hpp>
#include <eventlog/pg/pool.hpp>
#include <eventlog/relay/relay.hpp>
#include <iostream>
#include <stop_token>
#include <thread>

#include "cli/admin_commands.hpp"
#include "cli/fault_injection.hpp"
#include "cli/lifecycle.hpp"
#include "cli/relay_ops.hpp"

#ifndef EVENTLOG_COMMIT
#define EVENTLOG_COMMIT "unknown"
#endif

namespace {

using namespace eventlog;

/// The environment layered over `.env` (or the file EVENTLOG_ENV_FILE names): every command's configuration.
EnvMap ReadConfiguredEnvironment() {
    const char* env_file = std::getenv("EVENTLOG_ENV_FILE");
    const std::string path = env_file ? env_file : ".env";
    std::vector<std::string> ignored;
    EnvMap env = ReadEnvironment(path, &ignored);
    // The format first, so that the warnings below already follow a LOG_FORMAT set in `.env` (an unknown value is
    // refused by ApplyLogSettings).
    if (const auto format = env.find("LOG_FORMAT"); format != env.end()) log::SetFormat(format->second);
    for (const auto& name : ignored) {
        log::Warning("dotenv_variable_ignored",
                     {{"file", path},
                      {"variable", name},
                      {"reason", std::string("the environment configures this connection; its endpoint, credentials "
                                             "and TLS settings come from one source")}});
    }
    return env;
}

/// LOG_LEVEL and LOG_FORMAT from the configuration (the environment, then `.env`). Throws ConfigError for an unknown
/// LOG_FORMAT.
void ApplyLogSettings(const EnvMap& env, const Config& config) {
    log::SetLevel(config.log_level);
    const auto format = env.find("LOG_FORMAT");
    if (format != env.end() && !format->second.empty() && !log::SetFormat(format->second)) {
        throw ConfigError(fmt::format("LOG_FORMAT: expected json or console, got '{}'", format->second));
    }
}

Config LoadFromEnvironment(EnvMap* env_out = nullptr) {
    EnvMap env = ReadConfiguredEnvironment();
    Config config = LoadConfig(env);
    ApplyLogSettings(env, config);
    if (env_out != nullptr) *env_out = std::move(env);
    return config;
}

/// Prints an error as the lines it is (libpq's messages span lines, continued with a tab), each made safe for a
/// terminal: "error: " before the first, an indent before the others.
void PrintError(std::string_view message) {
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.remove_suffix(1);
    bool first = true;
    for (;;) {
        const auto end = message.find('\n');
        std::string_view line = message.substr(0, end);
        while (!line.empty() && line.front() == '\t') line.remove_prefix(1);
        std::cerr << (first ? "error: " : "  ") << SafeForTerminal(line) << "\n";
        first = false;
        if (end == std::string_view::npos) break;
        message.remove_prefix(end + 1);
    }
}

/// A session for a command; `unbounded` (migrate: migrations wait for each other's lock, and one may rewrite a
/// table) leaves its statements without POSTGRES_STATEMENT_TIMEOUT.
pg::Connection OpenPostgres(const Config& config, bool unbounded = false) {
    pg::ConnectOptions options;
    options.conninfo = config.postgres.ConnInfo();
    options.application_name = "eventlog-cli";
    options.statement_timeout = unbounded ? std::chrono::milliseconds(0) : config.postgres.statement_timeout;
    try {
        return pg::Connection::Open(options);
    } catch (const Error& e) {
        // With nothing configured, say so and where the defaults point (an operator in an empty folder otherwise
        // sees only a refused connection to a server they never named).
        bool configured = false;
        for (const auto& [name, value] :
             ReadEnvironment(std::getenv("EVENTLOG_ENV_FILE") ? std::getenv("EVENTLOG_ENV_FILE") : ".env")) {
            configured = configured || (!value.empty() && (name == "DATABASE_URL" || name.rfind("POSTGRES_", 0) == 0));
        }
        if (configured) throw;
        throw ConfigError(std::string(e.what()) +
                          "\nno DATABASE_URL or POSTGRES_* variable is set (environment, or .env " +
                          "here): the default is " + config.postgres.Redacted() +
                          "; set DATABASE_URL=postgres://USER:PASSWORD@HOST:PORT/DATABASE");
    }
}

clickhouse::Client OpenClickHouse(const Config& config) {
    clickhouse::ClientOptions options = clickhouse::OptionsFrom(config.clickhouse);
    options.database = "default";  // the target database may not exist yet (migrate creates it)
    return clickhouse::Client(options);
}

std::vector<Uuid> ParseIds(const std::vector<std::string>& texts) {
    std::vector<Uuid> ids;
    for (const auto& t : texts) {
        auto id = Uuid::Parse(t);
        if (!id) throw InvalidInputError("EVENT_ID", fmt::format("expected a UUID, got '{}'", t));
        ids.push_back(*id);
    }
    return ids;
}

int CmdMigrate() {
    const Config config = LoadFromEnvironment();
    auto pg = OpenPostgres(config, /*unbounded=*/true);
    auto ch = OpenClickHouse(config);
    const auto report = outbox::Migrate(pg, ch, config);
    for (const auto& name : report.applied) std::cout << "applied " << SafeForTerminal(name) << "\n";
    std::cout << fmt::format("migrations: {} applied, {} already applied\n", report.applied.size(),
                             report.already_applied);
    for (const auto& view : report.views_not_run) {
        std::cout << "warning: materialized view " << SafeForTerminal(view) << " on "
                  << SafeForTerminal(config.clickhouse.table)
                  << " does not see the events the relay delivers: ClickHouse " << SafeForTerminal(ch.Version().text)
                  << " does not run a table's views for rows a view pushes into it (docs/delivery.md, \"Materialized "
                     "views on event_log\")\n";
    }
    return 0;
}

/// Sends what the exporters still hold, each within its own bound (2 s, 3 s), logging what could not go.
void FlushExporters(sentry::SentryClient& sentry, tracing::TraceExporter& tracer) {
    if (!sentry.Flush(std::chrono::seconds(2))) log::Warning("sentry_flush_incomplete", {});
    if (!tracer.Flush(std::chrono::seconds(3))) log::Warning("otel_flush_incomplete", {});
}

int CmdRelay(bool drain) {
    // Before any thread starts (the Sentry and trace exporters start theirs below), the stop signals are blocked
    // (main, then the lifecycle), so that only the lifecycle's thread receives them (src/cli/lifecycle.hpp). The first
    // SIGTERM/SIGINT asks for a graceful stop, bounded by RELAY_SHUTDOWN_TIMEOUT_MS; a second exits at once. Either way
    // the delivery record keeps the batch in flight for recovery, so nothing is lost or duplicated.
    EnvMap env;
    const Config config = LoadFromEnvironment(&env);
    if (!config.clickhouse.cluster.empty() && config.clickhouse.shards.empty()) {
        // The relay writes each claim into one node's shard-local table itself (docs/cluster.md); through the
        // Distributed table an insert is queued and sent later, which defeats the presence check and the fence.
        throw ConfigError(
            "CLICKHOUSE_SHARDS: required with CLICKHOUSE_CLUSTER: the relay writes each claim into one node's "
            "shard-local table and needs every node's HTTP address, e.g. h1:8123,h2:8123;h3:8123,h4:8123 "
            "(docs/cluster.md)");
    }
    cli::Lifecycle life("relay", config.relay.shutdown_timeout);
    // Errors to Sentry when SENTRY_CONFIG_DSN is set (docs/observability.md, "Sentry"); outlives the relay.
    sentry::SentryClient sentry(sentry::ClientOptions::FromEnvironment(env));
    // Spans over OTLP/HTTP when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set; outlives the relay.
    tracing::TraceExporter tracer(tracing::ExporterOptions::FromEnvironment(env, "eventlog-relay"));
    // Metrics and health for a long-running relay; a drain (a one-off job) runs without a listener.
    Config ops_config = config;
    if (drain) ops_config.relay.metrics_listen.clear();
    cli::RelayOps ops(ops_config);
    cli::AddSentryMetrics(ops.Registry(), sentry);
    cli::AddTracingMetrics(ops.Registry(), tracer);
    relay::Relay relay(config, &ops.Registry(), &sentry, &tracer, cli::FaultInjectionFromEnvironment());

    relay::Stats stats;
    cli::LifecycleSteps steps;
    steps.run = [&] {
        relay::RunOptions options;
        options.drain = drain;
        ops.Start(relay);
        // Stopped before `relay` goes, on every path: its monitor and listener read the relay.
        const struct StopOps {
            cli::RelayOps& ops;
            ~StopOps() { ops.Stop(); }
        } stop_ops{ops};
        stats = relay.Run(options);
        return stats.stop_timed_out;
    };
    steps.stop = [&relay] { relay.Stop(); };
    steps.abort = [&relay] { relay.Abort(); };
    steps.flush = [&] { FlushExporters(sentry, tracer); };
    const int status = life.Run(steps);
    std::cout << fmt::format("delivered {} events in {} batches, {} dead-lettered, {} batches recovered\n",
                             stats.delivered, stats.batches, stats.dead_lettered, stats.recovered_batches);
    return status;
}

/// `eventlog serve`: the HTTP API (docs/http-api.md) until SIGTERM/SIGINT. The first signal stops accepting, closes
/// idle connections and lets requests in flight answer (bounded by RELAY_SHUTDOWN_TIMEOUT_MS, then the rest are
/// abandoned); a second exits at once. In production DATABASE_URL names a role that is a member of
/// eventlog_producer only.
int CmdServe(const std::string& listen) {
    const EnvMap env = ReadConfiguredEnvironment();
    const Config config = LoadConfig(env);
    ApplyLogSettings(env, config);
    http::ServeSettings settings = http::LoadServeSettings(env, config);  // refuses an empty SECRET_KEY
    if (!listen.empty()) http::ParseListen(listen, "--listen", settings.server);

    // Before any thread starts (the server's worker pool starts its threads when constructed): see CmdRelay.
    cli::Lifecycle life("serve", config.relay.shutdown_timeout);

    pg::PoolOptions pool_options;
    pool_options.connect.conninfo = config.postgres.ConnInfo();
    pool_options.connect.application_name = "eventlog-serve";
    pool_options.connect.statement_timeout = config.postgres.statement_timeout;
    pool_options.connect.connect_timeout = config.postgres.ConnectTimeout();
    pool_options.max_size = settings.pool_size;
    pool_options.acquire_timeout = settings.acquire_timeout;
    pg::Pool pool(pool_options);  // outlives the server, whose Wait() returns every session
    std::atomic<bool> stopping{false};

    // GET /metrics on the API's port (docs/observability.md, "The API server's metrics"): the server counts every
    // answer by route template and status; the pool and build info are read at scrape time.
    metrics::Registry registry;  // outlives the server
    metrics::AddBuildInfo(registry, std::string(observability::Version()), EVENTLOG_COMMIT);
    // A request that ends in a 500 (an unhandled exception, or a configuration or fatal error) goes to Sentry.
    sentry::SentryClient sentry(sentry::ClientOptions::FromEnvironment(env));  // outlives the server
    cli::AddSentryMetrics(registry, sentry);
    // The request spans (continuing an incoming traceparent) over OTLP/HTTP when an endpoint is set.
    tracing::TraceExporter tracer(tracing::ExporterOptions::FromEnvironment(env, "eventlog-api"));  // outlives it
    cli::AddTracingMetrics(registry, tracer);
    settings.server.tracer = &tracer;
    settings.server.on_unhandled = [&sentry](const std::exception& error, const std::string& route) {
        const auto* known = dynamic_cast<const Error*>(&error);
        sentry::Report report;
        if (known != nullptr) {
            report = sentry::ReportFrom(*known, "http_request_failed");
        } else {
            report.message = "http_request_failed";
            report.exception_type = "http_request_failed";
            report.exception_value = error.what();
            report.tags = {{"error.kind", "fatal"}, {"error.source", "eventlog"}};
        }
        report.tags.emplace_back("http.route", route);  // the template, never the path
        report.fingerprint = {"http_request_failed", route,
                              known != nullptr ? known->Code() : std::string("exception")};
        sentry.Capture(report);
    };
    registry.AddCallback(metrics::kPgPoolConnections, [&pool] {
        const auto open = static_cast<double>(pool.OpenCount());
        const auto in_use = static_cast<double>(pool.InUse());
        return std::vector<metrics::CallbackSample>{{{"idle"}, std::max(0.0, open - in_use)}, {{"in_use"}, in_use}};
    });
    settings.server.metrics = &registry;
    auto router = http::MakeApiRouter(pool, settings, [&stopping] { return stopping.load(); });
    router->Add("GET", "/metrics", http::MakeMetricsHandler(registry));
    http::Server server(settings.server, router);

    server.Start();
    cli::LifecycleSteps steps;
    steps.run = [&server] {
        server.Wait();
        return false;
    };
    steps.stop = [&] {
        stopping.store(true);  // /readyz turns 503
        server.Stop();         // stop accepting; idle connections close, requests in flight answer
    };
    steps.abort = [&server] { server.Abort(); };
    steps.flush = [&] { FlushExporters(sentry, tracer); };
    return life.Run(steps);
}

int CmdApiKeyCreate(const std::string& name, const std::vector<std::string>& scopes) {
    const Config config = LoadFromEnvironment();
    http::RequireStrongSecretKey(config.secret_key);
    auto pg = OpenPostgres(config);
    const std::string token = http::CreateApiKey(pg, config.secret_key, name, scopes);
    std::cout << "created API key " << SafeForTerminal(name) << " with scopes "
              << (scopes.empty() ? std::string("events:write events:read users:write (all)")
                                 : fmt::format("{}", fmt::join(scopes, " ")))
              << "; the token below is shown once and stored nowhere (only its HMAC is):\n"
              << token << "\n";
    return 0;
}

int CmdApiKeyList() {
    const Config config = LoadFromEnvironment();
    auto pg = OpenPostgres(config);
    const auto keys = http::ListApiKeys(pg);
    if (keys.empty()) {
        std::cout << "no API keys\n";
        return 0;
    }
    for (const auto& k : keys) {
        std::cout << fmt::format("{:<32} created={} {} scopes={}\n", SafeForTerminal(k.name), k.created_at,
                                 k.revoked_at.empty() ? std::string("active") : "revoked=" + k.revoked_at,
                                 fmt::join(k.scopes, ","));
    }
    return 0;
}

int CmdApiKeyRevoke(const std::string& name) {
    const Config config = LoadFromEnvironment();
    auto pg = OpenPostgres(config);
    if (!http::RevokeApiKey(pg, name)) {
        std::cerr << "error: no active API key named " << SafeForTerminal(name) << "\n";
        return 1;
    }
    std::cout << "revoked API key " << SafeForTerminal(name) << "\n";
    return 0;
}

int CmdStatus(bool json) {
    const Config config = LoadFromEnvironment();
    auto pg = OpenPostgres(config);
    const auto s = outbox::ReadStatus(pg);
    if (json) {
        std::cout << fmt::format(
            "{{\"pending\":{},\"oldest_pending_age_seconds\":{:.3f},\"in_flight_batches\":{},\"in_flight_events\":{},"
            "\"dead_letters\":{},\"retained_bytes\":{},\"retention_waiting\":{}}}\n",
            s.pending, s.oldest_pending_age_seconds, s.in_flight_batches, s.in_flight_events, s.dead_letters,
            s.retained_bytes, [&] {
                std::string quoted;
                AppendJsonString(quoted, s.retention_waiting);
                return quoted;
            }());
    } else {
        std::cout << fmt::format("pending:            {}\n", s.pending)
                  << fmt::format("oldest pending age: {:.3f} s\n", s.oldest_pending_age_seconds)
                  << fmt::format("in flight:          {} events in {} batches\n", s.in_flight_events,
                                 s.in_flight_batches)
                  << fmt::format("dead letters:       {}\n", s.dead_letters)
                  << fmt::format(
                         "outbox on disk:     {} bytes{}\n", s.retained_bytes,
                         s.retention_waiting.empty() ? std::string() : " (kept by " + s.retention_waiting + ")");
    }
    return 0;
}

int CmdEmit(const std::string& type, const std::string& context, const std::string& event_id,
            const std::string& environment, std::uint64_t metadata_version, int count) {
    const Config config = LoadFromEnvironment();
    auto pg = OpenPostgres(config);
    Event e;
    e.event_type = type;
    e.event_context = context;
    e.environment = environment;
    e.metadata_version = metadata_version;
    if (!event_id.empty()) {
        if (count != 1) throw InvalidInputError("--event-id", "cannot be combined with --count");
        e.event_id = ParseIds({event_id}).front();
    }
    pg::Transaction tx(pg);
    if (count == 1) {
        const Uuid id = outbox::Emit(tx, e);
        tx.Commit();
        std::cout << id.ToString() << "\n";
        return 0;
    }
    std::vector<Event> events(static_cast<std::size_t>(count), e);
    const auto ids = outbox::EmitMany(tx, std::move(events));
    tx.Commit();
    std::cout << fmt::format("emitted {} events\n", ids.size());
    return 0;
}

int CmdDlqList(bool json, int limit) {
    const Config config = LoadFromEnvironment();
    auto pg = OpenPostgres(config);
    const auto rows = outbox::ListDeadLetters(pg, limit);
    if (json) {
        std::string out = "[";
        for (std::size_t i = 0; i < rows.size(); ++i) {
            if (i) out += ",";
            out += rows[i].ToJson();
        }
        std::cout << SafeJsonForTerminal(out) << "]\n";
        return 0;
    }
    if (rows.empty()) {
        std::cout << "no dead letters\n";
        return 0;
    }
    for (const auto& d : rows) {
        // Event fields and server errors are data, not terminal commands.
        std::cout << fmt::format("{}  {:<24} attempts={} failed={}  {}\n", SafeForTerminal(d.event_id),
                                 SafeForTerminal(d.event_type), d.attempts, SafeForTerminal(d.last_failed_at),
                                 SafeForTerminal(d.error.substr(0, 160)));
    }
    return 0;
}

int CmdDlqShow(const std::string& id) {
    const Config config = LoadFromEnvironment();
    auto pg = OpenPostgres(config);
    const auto d = outbox::FindDeadLetter(pg, ParseIds({id}).front());
    if (!d) {
        std::cerr << "error: no dead letter with event_id " << SafeForTerminal(id) << "\n";
        return 1;
    }
    std::cout << SafeJsonForTerminal(d->ToJson()) << "\n";
    return 0;
}

int CmdDlqChange(bool replay, bool all, const std::vector<std::string>& ids) {
    if (all == !ids.empty()) throw InvalidInputError("EVENT_ID", "give either --all or one or more event ids");
    const Config config = LoadFromEnvironment();
    auto pg = OpenPostgres(config);
    const auto parsed = ParseIds(ids);
    const auto n = replay ? outbox::ReplayDeadLetters(pg, parsed) : outbox::DiscardDeadLetters(pg, parsed);
    std::cout << fmt::format("{} {} dead letters\n", replay ? "replayed" : "discarded", n);
    return 0;
}

/// `text` with the five XML special characters escaped, for a value inside an element.
std::string XmlEscape(std::string_view text) {
    std::string out;
    for (const char c : text) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&apos;";
                break;
            default:
                out.push_back(c);
        }
    }
    return out;
}

/// Runs `argv` as a child process with `extra_env` added, waits for it and returns its exit code.
int RunInteractive(const std::vector<std::string>& argv,
                   const std::vector<std::pair<std::string, std::string>>& extra_env) {
    const pid_t pid = ::fork();
    if (pid < 0) throw Error(ErrorKind::kFatal, "dbshell: fork failed");
    if (pid == 0) {
        for (const auto& [name, value] : extra_env) ::setenv(name.c_str(), value.c_str(), 1);
        std::vector<char*> args;
        args.reserve(argv.size() + 1);
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execvp(args[0], args.data());
        std::fprintf(stderr, "error: cannot run %s (is it installed? scripts/install-deps.sh)\n", args[0]);
        ::_exit(127);
    }
    // The shell owns the terminal's Ctrl-C while it runs.
    ::signal(SIGINT, SIG_IGN);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/// `eventlog dbshell`: psql on the configured PostgreSQL; `--clickhouse`: clickhouse-client on the configured
/// ClickHouse (native port CLICKHOUSE_NATIVE_PORT, default 9000). Passwords go through the environment or a
/// private temporary file, never the command line (which other users can read in ps).
int CmdDbShell(bool clickhouse) {
    const EnvMap env = ReadConfiguredEnvironment();
    const Config config = LoadConfig(env);
    if (!clickhouse) {
        PostgresConfig without_password = config.postgres;
        without_password.password.clear();
        std::vector<std::pair<std::string, std::string>> extra;
        if (!config.postgres.password.empty()) extra.emplace_back("PGPASSWORD", config.postgres.password);
        return RunInteractive({"psql", without_password.ConnInfo()}, extra);
    }
    const auto port_it = env.find("CLICKHOUSE_NATIVE_PORT");
    const std::string port = port_it != env.end() && !port_it->second.empty() ? port_it->second : "9000";
    std::vector<std::string> argv = {
        "clickhouse-client",    "--host",     config.clickhouse.host,    "--port", port, "--user",
        config.clickhouse.user, "--database", config.clickhouse.database};
    if (config.clickhouse.password.empty()) return RunInteractive(argv, {});
    char path[] = "/tmp/eventlog-dbshell-XXXXXX";
    const int fd = ::mkstemp(path);  // mode 0600
    if (fd < 0) throw Error(ErrorKind::kFatal, "dbshell: cannot create a temporary file");
    const std::string xml = "<config><password>" + XmlEscape(config.clickhouse.password) + "</password></config>\n";
    const bool written = ::write(fd, xml.data(), xml.size()) == static_cast<ssize_t>(xml.size());
    ::close(fd);
    if (!written) {
        ::unlink(path);
        throw Error(ErrorKind::kFatal, "dbshell: cannot write a temporary file");
    }
    argv.push_back(std::string("--config-file=") + path);
    const int rc = RunInteractive(argv, {});
    ::unlink(path);
    return rc;
}

}  // namespace

int main(int argc, char** argv) {
    // First thing, before any thread can start: SIGTERM/SIGINT/SIGHUP blocked, so that `relay` and `serve` receive
    // them on their lifecycle's thread only (src/cli/lifecycle.hpp). The other commands get them back below.
    cli::BlockStopSignals();
    CLI::App app{"eventlog: a transactional outbox relay from PostgreSQL to ClickHouse"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "eventlog 0.1.0");

    auto* migrate = app.add_subcommand("migrate", "Apply PostgreSQL and ClickHouse migrations (idempotent)");

    bool drain = false;
    auto* relay = app.add_subcommand("relay", "Deliver events from the outbox to ClickHouse until stopped");
    relay->add_flag("--drain", drain, "Deliver everything pending, then exit 0");

    std::string serve_listen;
    auto* serve = app.add_subcommand("serve", "Serve the HTTP API (docs/http-api.md) until stopped");
    serve->add_option("--listen", serve_listen, "HOST:PORT to listen on (default: HTTP_LISTEN, else 127.0.0.1:8000)");

    auto* apikey = app.add_subcommand("apikey", "Create, list or revoke API keys for the HTTP API");
    apikey->require_subcommand(1);
    std::string apikey_name, apikey_revoke_name;
    auto* apikey_create = apikey->add_subcommand("create", "Create a key; prints its token once, as the last line");
    apikey_create->add_option("--name", apikey_name, "A unique name for the key")->required();
    std::vector<std::string> apikey_scopes;
    apikey_create
        ->add_option("--scope", apikey_scopes,
                     "A right of the key, repeatable: events:write (POST /api/v1/events), events:read (GET "
                     "/api/v1/events/{id}), users:write (POST /api/v1/users); without it, all three")
        ->check(CLI::IsMember({"events:write", "events:read", "users:write"}));
    auto* apikey_list = apikey->add_subcommand("list", "List keys (names and dates, never tokens)");
    auto* apikey_revoke = apikey->add_subcommand("revoke", "Revoke a key; every server refuses it at once");
    apikey_revoke->add_option("NAME", apikey_revoke_name, "The key's name")->required();

    cli::AdminCommands admin_commands(app);

    bool status_json = false;
    auto* status = app.add_subcommand("status", "Print backlog, oldest pending age, in-flight batches, dead letters");
    status->add_flag("--json", status_json, "Print one JSON object");

    std::string emit_type, emit_context = "{}", emit_id, emit_env;
    std::uint64_t emit_version = 1;
    int emit_count = 1;
    auto* emit = app.add_subcommand("emit", "Write an event into the outbox (its own transaction)");
    emit->add_option("event_type", emit_type, "Event name, e.g. user_created or UserCreated")->required();
    emit->add_option("event_context", emit_context, "JSON object, e.g. '{\"email\":\"a@b.c\"}'");
    emit->add_option("--event-id", emit_id, "UUID to use instead of a random one");
    emit->add_option("--environment", emit_env, "Environment (default: the relay's ENVIRONMENT)");
    emit->add_option("--metadata-version", emit_version, "metadata_version (default 1)");
    emit->add_option("--count", emit_count, "Emit this many copies with random ids (one COPY)")
        ->check(CLI::Range(1, 10'000'000));

    auto* dlq = app.add_subcommand("dlq", "List, show, replay or discard dead letters");
    dlq->require_subcommand(1);
    bool dlq_json = false;
    int dlq_limit = 1000;
    auto* dlq_list = dlq->add_subcommand("list", "List dead letters");
    dlq_list->add_flag("--json", dlq_json, "Print a JSON array");
    dlq_list->add_option("--limit", dlq_limit, "At most this many (default 1000)")->check(CLI::Range(1, 1'000'000));
    std::string dlq_show_id;
    auto* dlq_show = dlq->add_subcommand("show", "Show one dead letter as JSON");
    dlq_show->add_option("EVENT_ID", dlq_show_id, "The event id")->required();
    bool replay_all = false, discard_all = false;
    std::vector<std::string> replay_ids, discard_ids;
    auto* dlq_replay = dlq->add_subcommand("replay", "Move dead letters back to the outbox (same event_id)");
    dlq_replay->add_flag("--all", replay_all, "Replay every dead letter");
    dlq_replay->add_option("EVENT_ID", replay_ids, "Event ids to replay");
    auto* dlq_discard = dlq->add_subcommand("discard", "Delete dead letters for good");
    dlq_discard->add_flag("--all", discard_all, "Discard every dead letter");
    dlq_discard->add_option("EVENT_ID", discard_ids, "Event ids to discard");

    bool dbshell_clickhouse = false;
    auto* dbshell = app.add_subcommand("dbshell", "Open psql (or clickhouse-client) on the configured database");
    dbshell->add_flag("--clickhouse", dbshell_clickhouse,
                      "clickhouse-client instead of psql (native port: CLICKHOUSE_NATIVE_PORT, default 9000)");

    CLI11_PARSE(app, argc, argv);
    if (!relay->parsed() && !serve->parsed()) cli::UnblockStopSignals();  // Ctrl-C ends a one-off command at once

    try {
        if (*migrate) return CmdMigrate();
        if (*relay) return CmdRelay(drain);
        if (*serve) return CmdServe(serve_listen);
        if (*apikey_create) return CmdApiKeyCreate(apikey_name, apikey_scopes);
        if (*apikey_list) return CmdApiKeyList();
        if (*apikey_revoke) return CmdApiKeyRevoke(apikey_revoke_name);
        if (const auto rc = admin_commands.Run([] { return OpenPostgres(LoadFromEnvironment()); })) return *rc;
        if (*status) return CmdStatus(status_json);
        if (*emit) return CmdEmit(emit_type, emit_context, emit_id, emit_env, emit_version, emit_count);
        if (*dlq_list) return CmdDlqList(dlq_json, dlq_limit);
        if (*dlq_show) return CmdDlqShow(dlq_show_id);
        if (*dlq_replay) return CmdDlqChange(true, replay_all, replay_ids);
        if (*dlq_discard) return CmdDlqChange(false, discard_all, discard_ids);
        if (*dbshell) return CmdDbShell(dbshell_clickhouse);
    } catch (const eventlog::Error& e) {
        // Messages may quote server answers and event data.
        PrintError(e.what());
        return e.Kind() == eventlog::ErrorKind::kConfiguration || e.Kind() == eventlog::ErrorKind::kInvalidInput ? 2
                                                                                                                 : 1;
    } catch (const std::exception& e) {
        PrintError(e.what());
        return 1;
    }
    return 0;
}
