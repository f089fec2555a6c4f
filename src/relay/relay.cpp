#include <algorithm>
#include <atomic>
#include <chrono>
#include <eventlog/core/error.hpp>
#include <eventlog/observability/log.hpp>
#include <eventlog/observability/tracing.hpp>
#include <eventlog/outbox/outbox.hpp>
#include <eventlog/relay/relay.hpp>
#include <iterator>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "relay/detail/batch_sender.hpp"
#include "relay/detail/clickhouse_sink.hpp"
#include "relay/detail/delivery_store.hpp"
#include "relay/detail/loop_observer.hpp"
#include "relay/detail/producer_links.hpp"
#include "relay/detail/retry_policy.hpp"
#include "relay/detail/step_probe.hpp"

namespace eventlog::relay {

using detail::PendingRow;

namespace {

/// Moves the rows over `limits` (rows that reached the outbox without emit(), e.g. by COPY of a privileged role)
/// into `dead` with the reason: one oversize event must never stop delivery for everyone.
void TakeOverLimits(std::vector<PendingRow>& rows, const outbox::Limits& limits, std::vector<PendingRow>& dead) {
    const auto over = [&](const PendingRow& r) { return outbox::LimitViolation(r.event, limits).has_value(); };
    if (std::none_of(rows.begin(), rows.end(), over)) return;
    std::vector<PendingRow> kept;
    for (auto& r : rows) {
        if (auto violation = outbox::LimitViolation(r.event, limits)) {
            log::Error("event_over_limits", {{"event_id", r.event.event_id.ToString()}, {"error", *violation}});
            r.error = *violation;
            r.attempts = 1;
            dead.push_back(std::move(r));
        } else {
            kept.push_back(std::move(r));
        }
    }
    rows = std::move(kept);
}

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// Tells the observer the relay rests for the scope's lifetime (however the scope ends).
class RestingScope {
public:
    explicit RestingScope(detail::LoopObserver& observer) : observer_(observer) { observer_.Resting(true); }
    ~RestingScope() { observer_.Resting(false); }
    RestingScope(const RestingScope&) = delete;
    RestingScope& operator=(const RestingScope&) = delete;

private:
    detail::LoopObserver& observer_;
};

/// Ends a claim's span and hands it to the exporter when the claim is done (an empty optional: nothing), with an
/// error status when the claim ends by an exception (its rows are retried or recovered). Never throws.
class SpanExport {
public:
    SpanExport(tracing::TraceExporter* tracer, std::optional<tracing::Span>& span)
        : tracer_(tracer), span_(span), exceptions_(std::uncaught_exceptions()) {}
    ~SpanExport() {
        if (!span_ || tracer_ == nullptr) return;
        try {
            if (std::uncaught_exceptions() > exceptions_) {
                span_->status = tracing::StatusCode::kError;
                span_->status_message = "delivery failed; the batch is retried";
            }
            span_->End();
            tracer_->Export(std::move(*span_));
        } catch (...) {
        }
    }
    SpanExport(const SpanExport&) = delete;
    SpanExport& operator=(const SpanExport&) = delete;

private:
    tracing::TraceExporter* tracer_;
    std::optional<tracing::Span>& span_;
    int exceptions_;
};

/// How often an idle relay looks for records and stages left by dead relays.
constexpr milliseconds kRecoveryInterval{5000};
/// The most of each recovery pass spent pruning the idempotency registry: half the interval, so one relay removes at
/// least 153,000 ids/s sustained. At a fifth (1 s) it removed 51,800 ids/s, below the 72-95k ids/s one session
/// registers through emit_batch() (docs/benchmarks.md, "Registry pruning").
constexpr milliseconds kPruneBudget{2500};
using detail::kSuspectWindow;

/// Links per claim span to producers' spans; OpenTelemetry SDKs' default span link limit.
constexpr std::size_t kMaxSpanLinks = 128;

}  // namespace

class Relay::Impl {
public:
    Impl(Config config, metrics::Registry* registry, sentry::SentryClient* sentry, tracing::TraceExporter* tracer,
         StepProbe probe)
        : config_(std::move(config)),
          tracer_(tracer),
          observer_(config_.relay, registry, sentry),
          probe_(std::move(probe)),
          rng_(std::random_device{}()),
          store_(config_, probe_),
          sink_(config_, probe_),
          sender_(
              sink_, config_.relay,
              detail::SenderHooks{[this](milliseconds d) { return SleepInterruptible(d); },
                                  [this](int failures) { return Backoff(failures); }, [this] { return SessionAlive(); },
                                  [this](const Error& e, int failures) { observer_.SendFailed(e, failures); }},
              counters_) {
        // On a cluster each claim names its node (after a failover: any node, looked up everywhere; "Failover").
        if (sink_.Clustered()) {
            store_.SetTargetChooser(
                [this] { return Clock::now() < suspect_until_ ? detail::kAnyNode : sink_.ChooseNode(); });
        }
    }

    Health GetHealth() const { return observer_.GetHealth(); }

    Stats Run(const RunOptions& options);
    void Stop() noexcept {
        stop_requested_at_.store(Clock::now().time_since_epoch().count());
        stop_.store(true);
    }
    void Abort() noexcept {
        stop_.store(true);
        abort_.store(true);
    }

private:
    void Connect(bool after_loss);
    bool SessionAlive();
    std::size_t ClaimAndDeliver();
    bool SleepUntilWoken(Clock::time_point last_recovery);
    void Recover();
    bool Dead(int owner, std::optional<detail::OwnerLock>& lock, bool quiet);
    void PruneEventIds();
    void Retain();
    bool SleepInterruptible(milliseconds duration);
    milliseconds Backoff(int failures);

    Config config_;
    tracing::TraceExporter* tracer_;
    detail::LoopObserver observer_;  // metrics, Sentry, failure log lines and the stall clock
    detail::Probe probe_;            // the test seam
    std::mt19937_64 rng_;
    std::atomic<bool> stop_{false};
    std::atomic<bool> abort_{false};
    std::atomic<Clock::rep> stop_requested_at_{0};
    detail::DeliveryStore store_;
    detail::ClickHouseSink sink_;
    detail::SendCounters counters_;
    detail::BatchSender sender_;
    bool connected_{false};
    Clock::time_point suspect_until_{};
    Clock::time_point last_claim_started_{};
    Stats stats_;
};

Relay::Relay(Config config, metrics::Registry* registry, sentry::SentryClient* sentry, tracing::TraceExporter* tracer,
             StepProbe probe)
    : impl_(std::make_unique<Impl>(std::move(config), registry, sentry, tracer, std::move(probe))) {}

Health Relay::GetHealth() const { return impl_->GetHealth(); }
Relay::~Relay() = default;
Stats Relay::Run(const RunOptions& options) { return impl_->Run(options); }
void Relay::Stop() noexcept { impl_->Stop(); }
void Relay::Abort() noexcept { impl_->Abort(); }

milliseconds Relay::Impl::Backoff(int failures) {
    // Equal jitter: uniform in [d/2, d], d = min(cap, base * 2^failures). The lower half bounds the retry rate
    // (at most ~4 attempts in the first second at the defaults) while the jitter still spreads relays apart.
    const auto base = config_.relay.backoff_base.count();
    const auto cap = config_.relay.backoff_cap.count();
    const int shift = std::min(failures, 30);
    const long long ceiling = std::max<long long>(std::min<long long>(cap, base * (1LL << shift)), 1);
    std::uniform_int_distribution<long long> dist(ceiling / 2, ceiling);
    return milliseconds(dist(rng_));
}

bool Relay::Impl::SleepInterruptible(milliseconds duration) {
    const auto until = Clock::now() + duration;
    for (;;) {
        if (abort_.load()) return false;
        if (stop_.load() && Clock::now() - Clock::time_point(Clock::duration(stop_requested_at_.load())) >
                                config_.relay.shutdown_timeout) {
            stats_.stop_timed_out = true;
            return false;  // graceful stop took too long: leave the batch to recovery
        }
        const auto now = Clock::now();
        if (now >= until) return true;
        std::this_thread::sleep_for(std::min<Clock::duration>(milliseconds(50), until - now));
    }
}

bool Relay::Impl::SessionAlive() {
    try {
        store_.CheckSession();
        return true;
    } catch (const Error&) {
        return false;
    }
}

void Relay::Impl::Connect(bool after_loss) {
    connected_ = false;
    sink_.Reset();
    store_.Connect();
    // The stage is created after the owner lock is taken and before any claim: see ClickHouseSink.
    sink_.Open(store_.OutboxId(), store_.Owner());
    connected_ = true;
    observer_.SessionUp();
    if (after_loss) suspect_until_ = Clock::now() + kSuspectWindow;
    // The durable window (a failover this process did not see: it started afterwards). Recovery, which runs before
    // the first claim, has fenced every stage whose owner's lock is free by then, so no insert of a session from
    // before the failover can land after a presence check.
    suspect_until_ = std::max(suspect_until_, Clock::now() + store_.SuspectFor());
    log::Info("relay_connected", {{"postgres", config_.postgres.Redacted()},
                                  {"clickhouse", config_.clickhouse.Redacted()},
                                  {"owner", static_cast<std::int64_t>(store_.Owner())},
                                  {"backend_pid", static_cast<std::int64_t>(store_.BackendPid())},
                                  {"postgres_server", store_.Server()}});
}

std::size_t Relay::Impl::ClaimAndDeliver() {
    const auto t0 = Clock::now();
    last_claim_started_ = t0;
    auto rows = store_.Claim(/*prefetch_next=*/!stop_.load());
    if (rows.empty()) {
        if (!store_.ClaimInFlight()) observer_.Idle();  // nothing pending, nothing held
        return 0;
    }
    observer_.Busy();
    const auto t1 = Clock::now();
    const std::size_t n = rows.size();
    const auto batch_ids = detail::BatchIds(rows);
    // The claim's span (when spans are exported) and log context: every line about this claim carries its first
    // delivery record's id, its size, and the span's ids (docs/observability.md, "Traces").
    std::optional<tracing::Span> span;
    log::Fields context{{"batch_id", batch_ids.front().ToString()}, {"batch_events", static_cast<std::int64_t>(n)}};
    if (tracer_ != nullptr && tracer_->Enabled()) {
        span.emplace(tracing::StartSpan("eventlog.relay deliver", tracing::SpanKind::kConsumer));
        span->attributes = {{"messaging.system", std::string("eventlog")},
                            {"messaging.operation.name", std::string("deliver")},
                            {"messaging.destination.name", config_.clickhouse.table},
                            {"messaging.batch.message_count", static_cast<std::int64_t>(n)},
                            {"eventlog.delivery_records", static_cast<std::int64_t>(batch_ids.size())}};
        // To the spans that wrote the claim's events (OpenTelemetry messaging: a batch links to each message's
        // creation context), so a trace leads from an audit row's request to its delivery and back.
        auto producers = detail::LinkProducers(rows, kMaxSpanLinks);
        span->links = std::move(producers.links);
        span->dropped_links_count = producers.dropped;
        context.emplace_back("trace_id", tracing::ToHex(span->context.trace_id));
        context.emplace_back("span_id", tracing::ToHex(span->context.span_id));
    }
    const log::ScopedContext scope(std::move(context));
    const SpanExport export_span(tracer_, span);
    probe_.At("after_claim");
    // The claim's node (on a cluster; the one server otherwise), with this session's stage there.
    const std::string target = store_.LastClaimTarget();
    sink_.Use(target, [this] { store_.CheckSession(); });
    const bool reconcile = Clock::now() < suspect_until_ || target == detail::kAnyNode;
    // Limits apply to rows never sent: a row that may already be in ClickHouse (recovery, the presence window)
    // is never dead-lettered for its size, which would leave it in both places.
    std::vector<PendingRow> over;
    if (!reconcile) TakeOverLimits(rows, store_.Limits(), over);
    std::vector<std::int64_t> enqueued_us;  // only with metrics: the write times, for the lag histogram
    if (observer_.WantsLags()) {
        enqueued_us.reserve(rows.size());
        for (const auto& row : rows) enqueued_us.push_back(row.enqueued_us);
    }
    auto dead = sender_.Deliver(std::move(rows), reconcile);
    dead.insert(dead.end(), std::make_move_iterator(over.begin()), std::make_move_iterator(over.end()));
    const auto t2 = Clock::now();
    probe_.At("after_insert");
    store_.Acknowledge(batch_ids, dead);
    observer_.DeadLettered(dead);
    if (span) span->attributes.emplace_back("eventlog.dead_lettered", static_cast<std::int64_t>(dead.size()));
    observer_.Inserted(std::chrono::duration<double>(t2 - t1).count());
    observer_.Acknowledged(static_cast<std::int64_t>(n - dead.size()), static_cast<std::int64_t>(batch_ids.size()),
                           "delivered", enqueued_us);
    const auto us = [](Clock::duration d) {
        return static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
    };
    // Where a claim's time goes: waiting for the claim (mostly hidden by the prefetch), sending, acknowledging.
    log::Debug("claim_delivered", {{"events", static_cast<std::int64_t>(n)},
                                   {"records", static_cast<std::int64_t>(batch_ids.size())},
                                   {"claim_wait_us", us(t1 - t0)},
                                   {"send_us", us(t2 - t1)},
                                   {"ack_us", us(Clock::now() - t2)}});
    stats_.batches += static_cast<std::int64_t>(batch_ids.size());
    stats_.dead_lettered += static_cast<std::int64_t>(dead.size());
    stats_.delivered += static_cast<std::int64_t>(n - dead.size());
    return n;
}

// Resting without missing an event (docs/delivery.md, "Waking the relay"). Producers do nothing for it: the relay
// reads the outbox's id sequence S, draws a mark, and claims every RELAY_POLL_MS until every transaction older than
// the mark has ended, then once more; from then on it only reads the sequence every RELAY_POLL_MS (no snapshot, no
// index) and starts over when it moved. A producer takes its transaction id before it draws an outbox id, so a row
// with an id at or below S belongs to a transaction older than the mark, which the last claim comes after; an id
// drawn later moves the sequence. Returns true when events were found (or a NOTIFY came), false on a timeout or a
// stop request.
bool Relay::Impl::SleepUntilWoken(Clock::time_point last_recovery) {
    const auto until = std::min<Clock::duration>(config_.relay.processing_interval,
                                                 kRecoveryInterval - (Clock::now() - last_recovery));
    if (until <= Clock::duration::zero()) return false;
    const auto deadline = Clock::now() + until;
    const auto poll = std::max(config_.relay.poll_interval, milliseconds(1));
    while (!stop_.load() && Clock::now() < deadline) {
        const std::int64_t seen = store_.OutboxSequence();
        const std::int64_t mark = store_.Mark();
        for (;;) {
            const bool ended = store_.OlderTransactionsEnded(mark);
            if (ClaimAndDeliver() > 0) return true;
            if (ended) break;  // the claim above came after every transaction that drew an id up to `seen`
            if (stop_.load() || Clock::now() >= deadline) return false;
            SleepInterruptible(poll);
        }
        const RestingScope resting(observer_);
        while (!stop_.load() && Clock::now() < deadline && store_.OutboxSequence() == seen) {
            const auto slice = std::min<Clock::duration>(poll, deadline - Clock::now());
            if (store_.WaitForNotify(std::chrono::duration_cast<milliseconds>(slice))) return true;
        }
    }
    return false;
}

// Accepted event ids past IDEMPOTENCY_WINDOW leave the registry in batches of 10,000 until none is left, or for at
// most kPruneBudget of each recovery pass (every kRecoveryInterval), so that a long backlog of them never holds up
// delivery for long. Before, a pass removed 100,000 at most (20,000 a second), and sustained writes above that
// grew the registry without bound.
void Relay::Impl::PruneEventIds() {
    const auto until = Clock::now() + kPruneBudget;
    while (!stop_.load() && Clock::now() < until) {
        if (store_.PruneEventIds(config_.relay.idempotency_window) < 10'000) break;
    }
}

// Delivered rows leave the outbox by partition (eventlog.truncate_delivered()). A partition another session holds
// (pg_dump, a long read) is skipped and tried again at the next pass: it costs disk until then, never a wait.
void Relay::Impl::Retain() {
    for (const auto& slot : store_.Retain()) {
        if (slot.state == "truncated") {
            log::Info("outbox_partition_truncated",
                      {{"slot", static_cast<std::int64_t>(slot.slot)}, {"bytes", slot.bytes}});
        } else if (slot.state == "locked") {
            log::Warning("outbox_partition_held",
                         {{"slot", static_cast<std::int64_t>(slot.slot)},
                          {"bytes", slot.bytes},
                          {"hint", std::string("another session holds the partition (pg_dump, a long read): its "
                                               "delivered rows stay on disk until it ends")}});
        }
    }
}

// Whether `owner` is dead: its lock taken into `lock` (released when that goes out of scope, whatever happens), or
// held by a session that is no relay (the owner is dead all the same: fenced first, then adopted by one relay only,
// Adopt being one statement). A held lock otherwise: the owner's session lives and it is not ours to touch.
bool Relay::Impl::Dead(int owner, std::optional<detail::OwnerLock>& lock, bool quiet) {
    if (auto taken = store_.TryLock(owner)) {
        lock.emplace(std::move(*taken));
        return true;
    }
    if (!store_.HeldByStranger(owner)) return false;
    if (!quiet) {
        log::Warning("owner_lock_held_by_stranger",
                     {{"dead_owner", static_cast<std::int64_t>(owner)},
                      {"hint", std::string("a session outside eventlog_relay holds a relay's advisory lock; its "
                                           "records are recovered all the same")}});
    }
    return true;
}

void Relay::Impl::Recover() {
    const bool clustered = sink_.Clustered();
    // Owners with records, and owners with only a stage left (a relay that died before claiming, or after its
    // last acknowledgement): every dead one is fenced, and its records are finished.
    std::set<int> owners;
    for (const int o : store_.OtherOwners()) owners.insert(o);
    const auto staged = sink_.StagedOwners();  // per node that answers
    for (const auto& [node, on_node] : staged) {
        for (const int o : on_node) {
            if (o != store_.Owner()) owners.insert(o);
        }
    }
    // On a cluster, first the sweep: every dead owner's stages go on every node that answers, records or not. A node
    // swept so holds no insert of a dead session any more, which a look-up on every node needs (kAnyNode).
    if (clustered) {
        std::set<std::string> unswept;
        for (const int owner : owners) {
            std::optional<detail::OwnerLock> lock;
            if (!Dead(owner, lock, /*quiet=*/true)) continue;
            for (const auto& [node, on_node] : staged) {
                if (on_node.count(owner) == 0) continue;
                try {
                    sink_.Fence(owner, node);
                } catch (const Error& e) {
                    if (!detail::ClickHouseSink::NodeFailure(e)) throw;
                    unswept.insert(node);
                }
            }
        }
        for (const auto& entry : staged) {
            if (unswept.count(entry.first) == 0) sink_.Swept(entry.first);
        }
    }
    for (const int owner : owners) {
        std::optional<detail::OwnerLock> lock;
        if (!Dead(owner, lock, /*quiet=*/false)) continue;
        // Per target (a cluster's node; the one server otherwise): fenced there, then re-owned: the records move to
        // this session's key before anything is sent, so an insert of ours that goes in doubt is fenced by whoever
        // recovers this session (its stage, its records), never mistaken for the dead owner's, whose stage is
        // already gone. A node that does not answer keeps its records waiting (the owner stays dead: a later pass).
        const auto targets = clustered ? store_.Targets(owner) : std::vector<std::string>{detail::kOneServer};
        for (const auto& target : targets) {
            const auto wait = [&](const std::string& why) {
                log::Warning("recovery_waits_for_node", {{"dead_owner", static_cast<std::int64_t>(owner)},
                                                         {"target", target},
                                                         {"error", why}});
            };
            if (!sink_.Reachable(target)) {
                wait("the node does not answer (or is not in CLICKHOUSE_SHARDS)");
                continue;
            }
            try {
                sink_.Fence(owner, target);
            } catch (const Error& e) {
                if (!clustered || !detail::ClickHouseSink::NodeFailure(e)) throw;
                wait(e.what());
                continue;
            }
            auto rows = store_.Adopt(owner, clustered ? std::optional(target) : std::nullopt);
            if (rows.empty()) continue;
            sink_.Use(target, [this] { store_.CheckSession(); });
            const auto batch_ids = detail::BatchIds(rows);
            const auto total = static_cast<std::int64_t>(rows.size());
            log::Fields fields{{"dead_owner", static_cast<std::int64_t>(owner)},
                               {"batches", static_cast<std::int64_t>(batch_ids.size())},
                               {"events", total}};
            if (clustered) fields.emplace_back("target", target);
            log::Warning("batch_recovering", fields);
            const auto sent_before = counters_.sent;
            observer_.Busy();
            const auto dead = sender_.Deliver(std::move(rows), /*reconcile_first=*/true);
            store_.Acknowledge(batch_ids, dead);
            observer_.DeadLettered(dead);
            observer_.Acknowledged(counters_.sent - sent_before, static_cast<std::int64_t>(batch_ids.size()),
                                   "recovered", {});
            stats_.recovered_batches += static_cast<std::int64_t>(batch_ids.size());
            stats_.delivered += counters_.sent - sent_before;  // only what recovery sent, not what it found present
            stats_.batches += static_cast<std::int64_t>(batch_ids.size());
            stats_.dead_lettered += static_cast<std::int64_t>(dead.size());
            log::Info("batch_recovered", {{"dead_owner", static_cast<std::int64_t>(owner)},
                                          {"batches", static_cast<std::int64_t>(batch_ids.size())}});
        }
    }
}

Stats Relay::Impl::Run(const RunOptions& options) {
    log::Info("relay_starting", {{"batch_size", static_cast<std::int64_t>(config_.relay.event_batch_size)},
                                 {"insert_size", static_cast<std::int64_t>(config_.relay.clickhouse_batch_size)},
                                 {"drain", options.drain}});
    int failures = 0;
    bool recovery_due = true;
    bool lost = false;
    auto last_recovery = Clock::now();
    constexpr auto kBusy = Clock::time_point::max();
    auto idle_since = kBusy;  // when claims started coming back empty
    while (!stop_.load()) {
        try {
            if (!connected_) {
                Connect(lost);
                recovery_due = true;  // the previous session's records come first
            }
            if (recovery_due || Clock::now() - last_recovery >= kRecoveryInterval) {
                Recover();
                PruneEventIds();
                Retain();
                recovery_due = false;
                last_recovery = Clock::now();
            }
            const std::size_t n = ClaimAndDeliver();
            failures = 0;
            if (n > 0) {
                idle_since = kBusy;
                // A claim that was not full: the next starts RELAY_POLL_MS after it at the earliest, so that a
                // steady trickle becomes a few large inserts instead of many tiny parts in ClickHouse.
                if (!options.drain && !store_.LastClaimWasFull()) {
                    const auto next = last_claim_started_ + config_.relay.poll_interval;
                    if (next > Clock::now()) {
                        SleepInterruptible(std::chrono::duration_cast<milliseconds>(next - Clock::now()));
                    }
                }
                continue;
            }
            if (options.drain) {
                // An empty claim cut its range at a snapshot taken after it began: every row committed before is
                // in a chunk. Done once no chunk is in flight either.
                if (store_.InFlightRecords() == 0) break;
                Recover();
                last_recovery = Clock::now();
                if (store_.InFlightRecords() > 0) SleepInterruptible(milliseconds(200));  // live relays' batches
                continue;
            }
            // Idle: poll for a while (a pause between events is usually short), then sleep until woken.
            if (idle_since == kBusy) idle_since = Clock::now();
            if (Clock::now() - idle_since < config_.relay.idle_linger) {
                SleepInterruptible(config_.relay.poll_interval);
                continue;
            }
            if (SleepUntilWoken(last_recovery)) idle_since = kBusy;
        } catch (const Error& e) {
            const detail::LoopAction action = detail::DecideLoop(e);
            if (action != detail::LoopAction::kStop && abort_.load()) break;
            observer_.LoopFailed(e, action, failures);  // logs it, counts it, reports what deserves a report
            if (action == detail::LoopAction::kStop) throw;
            // Whatever failed, this session ends: the next one fences this one's stage, so an insert that may
            // still be running cannot land after the rows are checked, then finishes its records.
            // A lost PostgreSQL session opens the presence window ("Failover"); a ClickHouse failure does not (its
            // in-doubt insert is the old owner's, finished by recovery: fence, then presence).
            lost = lost || !store_.Healthy() || (e.Source() == ErrorSource::kPostgres && e.PoisonsConnection());
            connected_ = false;
            ++stats_.retries;
            SleepInterruptible(Backoff(failures++));
        }
    }
    // A claim prefetched before the stop request is delivered too (unless aborting): it is ours.
    if (!abort_.load() && connected_ && store_.ClaimInFlight()) {
        try {
            ClaimAndDeliver();
        } catch (const Error& e) {
            log::Warning("relay_prefetched_batch_left", {{"error", std::string(e.what())}});
        }
    }
    // With nothing of ours in flight, the stage goes too; otherwise it stays for the fence of the next relay.
    if (!abort_.load() && connected_ && !store_.ClaimInFlight()) {
        try {
            if (!store_.HasRecords(store_.Owner())) sink_.DropOwnStage();
        } catch (const Error&) {
        }
    }
    stats_.retries += counters_.retries;
    log::Info("relay_stopped", {{"delivered", stats_.delivered},
                                {"batches", stats_.batches},
                                {"dead_lettered", stats_.dead_lettered},
                                {"recovered_batches", stats_.recovered_batches},
                                {"retries", stats_.retries}});
    return stats_;
}

}  // namespace eventlog::relay
