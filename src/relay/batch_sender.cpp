#include "relay/detail/batch_sender.hpp"

#include <deque>
#include <eventlog/clickhouse/errors.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/observability/log.hpp>
#include <iterator>

#include "relay/detail/retry_policy.hpp"

namespace eventlog::relay::detail {
namespace {

/// A piece of the work list: rows not yet confirmed in ClickHouse.
struct Chunk {
    std::vector<PendingRow> rows;
    bool reconcile{false};    ///< Ask ClickHouse which rows landed before sending.
    bool split{false};        ///< After reconciling, send each half on its own.
    bool dead_letter{false};  ///< After reconciling, the rows still missing go to the dead letters.
    int failures{0};          ///< Consecutive failed attempts of this chunk.
    std::string error;        ///< The last failure's text (for a dead letter).
};

/// Moves rows [from, to) of `rows` into a new chunk.
Chunk Slice(std::vector<PendingRow>& rows, std::size_t from, std::size_t to, int failures) {
    Chunk c;
    c.rows.assign(std::make_move_iterator(rows.begin() + static_cast<long>(from)),
                  std::make_move_iterator(rows.begin() + static_cast<long>(to)));
    c.failures = failures;
    return c;
}

}  // namespace

BatchSender::BatchSender(ClickHouseSink& sink, const RelayConfig& config, SenderHooks hooks, SendCounters& counters)
    : sink_(sink), config_(config), hooks_(std::move(hooks)), counters_(counters) {}

std::vector<PendingRow> BatchSender::Deliver(std::vector<PendingRow> rows, bool reconcile_first) {
    std::vector<PendingRow> dead;
    std::deque<Chunk> work;
    Chunk first;
    first.rows = std::move(rows);
    first.reconcile = reconcile_first;
    work.push_back(std::move(first));
    bool accepted = false;  // an insert of this delivery succeeded (evidence that a failing row fails for itself)
    const auto limit = static_cast<std::size_t>(config_.clickhouse_batch_size);
    while (!work.empty()) {
        Chunk& chunk = work.front();
        try {
            if (chunk.reconcile) {
                const std::size_t before = chunk.rows.size();
                chunk.rows = sink_.Missing(chunk.rows);  // on a throw the chunk keeps its rows
                chunk.reconcile = false;
                if (chunk.rows.size() < before) {
                    // Rows already in ClickHouse (a lost acknowledgement, a claim lost in a failover): not sent again.
                    log::Info("batch_reconciled",
                              {{"rows", static_cast<std::int64_t>(before)},
                               {"already_in_clickhouse", static_cast<std::int64_t>(before - chunk.rows.size())}});
                }
            }
            if (chunk.rows.empty()) {
                work.pop_front();
                continue;
            }
            if (chunk.dead_letter) {
                // Still missing after the last presence check: the row was never stored, it goes to the dead letters.
                // (Checked first because a view on the target may throw after the row's part was written.)
                for (auto& row : chunk.rows) {
                    row.attempts = std::max(row.attempts, chunk.failures) + 1;
                    row.error = chunk.error;
                    log::Error("event_dead_lettered", {{"event_id", row.event.event_id.ToString()},
                                                       {"attempts", static_cast<std::int64_t>(row.attempts)},
                                                       {"error", chunk.error}});
                    dead.push_back(std::move(row));
                }
                work.pop_front();
                continue;
            }
            if (chunk.split && chunk.rows.size() > 1) {
                Chunk whole = std::move(chunk);
                work.pop_front();
                const std::size_t half = whole.rows.size() / 2;
                log::Info("batch_bisect", {{"batch_id", whole.rows.front().batch_id.ToString()},
                                           {"left", static_cast<std::int64_t>(half)},
                                           {"right", static_cast<std::int64_t>(whole.rows.size() - half)}});
                work.push_front(Slice(whole.rows, half, whole.rows.size(), whole.failures));
                work.push_front(Slice(whole.rows, 0, half, whole.failures));
                continue;
            }
            chunk.split = false;
            if (chunk.rows.size() > limit) {
                // Each insert carries at most CLICKHOUSE_BATCH_SIZE rows, in outbox order.
                Chunk whole = std::move(chunk);
                work.pop_front();
                for (std::size_t end = whole.rows.size(); end > 0;) {
                    const std::size_t begin = end > limit ? ((end - 1) / limit) * limit : 0;
                    work.push_front(Slice(whole.rows, begin, end, whole.failures));
                    end = begin;
                }
                continue;
            }
            sink_.Insert(chunk.rows, dead);  // unencodable rows move to `dead` before anything is sent
            counters_.sent += static_cast<std::int64_t>(chunk.rows.size());
            accepted = accepted || !chunk.rows.empty();
            work.pop_front();
        } catch (const Error& e) {
            ++counters_.retries;
            SendState state;
            state.rows = chunk.rows.size();
            state.failures = chunk.failures;
            state.row_attempts = chunk.rows.size() == 1 ? std::max(chunk.rows.front().attempts, chunk.failures) : 0;
            state.max_attempts = config_.max_attempts;
            state.session_lost = e.PoisonsConnection() && e.Source() == ErrorSource::kPostgres;
            if (!state.session_lost && e.Kind() != ErrorKind::kRejected) state.session_lost = !hooks_.session_alive();
            state.cause = CauseOf(e);
            state.others_accepted = accepted;
            state.others_waiting = work.size() > 1;
            const Action action = Decide(e, state);
            // On a cluster a failure about the node leaves the chunk to recovery, which finishes it on that node once
            // it answers again; the relay goes on with the other nodes meanwhile (docs/cluster.md).
            const bool wait_for_node = sink_.Clustered() && ClickHouseSink::NodeFailure(e);
            // A row that is dead-lettered now is reported as a dead letter, not as a failed batch.
            if (hooks_.on_failure && (action != Action::kDeadLetter || wait_for_node)) {
                hooks_.on_failure(e, chunk.failures + 1);
            }
            const std::string error_text = e.what();
            log::Warning("delivery_failed",
                         {{"batch_id", chunk.rows.empty() ? std::string() : chunk.rows.front().batch_id.ToString()},
                          {"rows", static_cast<std::int64_t>(chunk.rows.size())},
                          {"kind", std::string(ToString(e.Kind()))},
                          {"code", e.Code()},
                          {"action", wait_for_node ? std::string("wait_for_node") : std::string(ToString(action))},
                          {"failures", static_cast<std::int64_t>(chunk.failures + 1)},
                          {"error", error_text}});
            if (wait_for_node) throw;
            switch (action) {
                case Action::kPause:
                case Action::kLeaveToRecovery:
                case Action::kStop:
                    throw;
                case Action::kDeadLetter:
                    // A failed insert may have stored its rows (a view on the target that throws fails the INSERT
                    // after the part is written): only a row still missing after a presence check is dead-lettered.
                    chunk.reconcile = true;
                    chunk.dead_letter = true;
                    chunk.error = clickhouse::WithoutEndpoint(error_text);  // shown by the API: no server URL
                    continue;
                case Action::kBisect:
                    chunk.reconcile = true;  // a failed multi-partition insert may have written some parts
                    chunk.split = true;
                    if (e.Kind() == ErrorKind::kRejected) {
                        chunk.failures = 0;
                        continue;
                    }
                    // An unknown cause keeps its count, so each half gets one try before it is split again; each
                    // split waits a first backoff (it may be the server, not the rows), which bounds the request
                    // rate without making a 14-level bisection of 10,000 rows take minutes.
                    if (!hooks_.sleep(hooks_.backoff(0))) throw;
                    continue;
                case Action::kDefer: {
                    // Unknown whether the failure is about this row: the rest of the delivery is tried first.
                    Chunk later = std::move(chunk);
                    work.pop_front();
                    later.reconcile = true;
                    const int failures = later.failures++;
                    work.push_back(std::move(later));
                    if (!hooks_.sleep(hooks_.backoff(failures))) throw;
                    continue;
                }
                case Action::kRetry:  // a refusal: not a rejection of the rows, so no row attempt is counted
                    break;
                case Action::kReconcileAndRetry:
                    chunk.reconcile = true;
                    if (chunk.rows.size() == 1 && e.Kind() == ErrorKind::kRejected) chunk.rows.front().attempts += 1;
                    break;
            }
            if (!hooks_.sleep(hooks_.backoff(chunk.failures++))) throw;
        }
    }
    return dead;
}

}  // namespace eventlog::relay::detail
