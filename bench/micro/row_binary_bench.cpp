// RowBinaryEncoder::Append throughput: ~300-byte events encoded for event_log's two shapes (DateTime64(6) on
// modern servers, DateTime on 18.16). Bytes processed are the RowBinary bytes written.
#include <benchmark/benchmark.h>

#include <eventlog/clickhouse/row_binary.hpp>
#include <string>
#include <vector>

namespace eventlog::clickhouse {
namespace {

std::vector<Column> EventLogColumns(const std::string& time_type) {
    return {
        {"event_id", "UUID", ""},          {"event_type", "String", ""},    {"event_date_time", time_type, ""},
        {"environment", "String", ""},     {"event_context", "String", ""}, {"metadata_version", "UInt64", "DEFAULT"},
        {"trace_id", "String", "DEFAULT"}, {"batch_id", "UUID", ""},        {"inserted_at", "DateTime", "DEFAULT"}};
}

// Events as the relay decodes them from a claim: several types, contexts of 250-350 bytes.
std::vector<Event> SampleEvents() {
    const char* types[] = {"user_created", "order_placed", "payment_captured", "page_viewed"};
    std::vector<Event> events;
    for (int i = 0; i < 1000; ++i) {
        Event e;
        e.event_id = Uuid::Random();
        e.event_type = types[i % 4];
        e.event_date_time_us = 1764230400000000 + i * 1234;
        e.environment = "Production";
        e.event_context = R"({"user_id":)" + std::to_string(100000 + i) + R"(,"email":"user.)" + std::to_string(i) +
                          R"(@example.com","first_name":"Alexandra","last_name":"Petrovich-Smith","plan":"enterprise",)"
                          R"("source":"signup-form","ip":"203.0.113.7","user_agent":"Mozilla/5.0 (X11; Linux x86_64) )"
                          R"(AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"})";
        e.trace_id = i % 3 == 0 ? "4bf92f3577b34da6a3ce929d0e0e4736" : "";
        events.push_back(std::move(e));
    }
    return events;
}

void EncodeRows(benchmark::State& state, const std::string& time_type) {
    const auto encoder = RowBinaryEncoder::ForColumns(EventLogColumns(time_type));
    const auto events = SampleEvents();
    const Uuid batch_id = Uuid::Random();
    std::string out;
    std::int64_t bytes = 0;
    std::int64_t rows = 0;
    for (auto _ : state) {
        out.clear();
        for (const auto& e : events) encoder.Append(e, batch_id, out);
        benchmark::DoNotOptimize(out.data());
        bytes += static_cast<std::int64_t>(out.size());
        rows += static_cast<std::int64_t>(events.size());
    }
    state.SetBytesProcessed(bytes);
    state.SetItemsProcessed(rows);
}

void BM_RowBinaryAppend_DateTime64(benchmark::State& state) { EncodeRows(state, "DateTime64(6, 'UTC')"); }
void BM_RowBinaryAppend_DateTime(benchmark::State& state) { EncodeRows(state, "DateTime('UTC')"); }
BENCHMARK(BM_RowBinaryAppend_DateTime64);
BENCHMARK(BM_RowBinaryAppend_DateTime);

}  // namespace
}  // namespace eventlog::clickhouse
