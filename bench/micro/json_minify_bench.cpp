// JSON minifier throughput: MinifyJson (validates, then minifies: the producer path of Outbox::Emit) and
// MinifyTrustedJson (no validation: the relay's decode path), on a ~300-byte event context written with
// spaces and newlines and on a 64 KiB document. Bytes processed are the input bytes.
#include <benchmark/benchmark.h>

#include <eventlog/core/json.hpp>
#include <string>

namespace eventlog {
namespace {

const std::string kContext = R"({
  "order_id": 1234567, "customer_id": 98765, "currency": "EUR", "total": "123.45",
  "items": [ { "sku": "SKU-4f2a9", "qty": 2, "price": "19.90" }, { "sku": "SKU-77c01", "qty": 1, "price": "83.65" } ],
  "shipping": { "country": "DE", "city": "Berlin", "method": "express" },
  "note": "leave at the door, \"ring twice\"", "coupon": null
})";

std::string LargeDocument() {
    std::string doc = "{\"entries\": [";
    while (doc.size() < 64 * 1024) {
        if (doc.back() != '[') doc += ", ";
        doc += kContext;
    }
    doc += "]}";
    return doc;
}

void Run(benchmark::State& state, const std::string& input, bool validate) {
    std::int64_t bytes = 0;
    for (auto _ : state) {
        std::string out = validate ? MinifyJson(input) : MinifyTrustedJson(input);
        benchmark::DoNotOptimize(out.data());
        bytes += static_cast<std::int64_t>(input.size());
    }
    state.SetBytesProcessed(bytes);
}

void BM_MinifyJson_Context(benchmark::State& state) { Run(state, kContext, true); }
void BM_MinifyTrustedJson_Context(benchmark::State& state) { Run(state, kContext, false); }
void BM_MinifyJson_64KiB(benchmark::State& state) { Run(state, LargeDocument(), true); }
void BM_MinifyTrustedJson_64KiB(benchmark::State& state) { Run(state, LargeDocument(), false); }
BENCHMARK(BM_MinifyJson_Context);
BENCHMARK(BM_MinifyTrustedJson_Context);
BENCHMARK(BM_MinifyJson_64KiB);
BENCHMARK(BM_MinifyTrustedJson_64KiB);

}  // namespace
}  // namespace eventlog
