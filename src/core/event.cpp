#include <fmt/format.h>

#include <chrono>
#include <ctime>
#include <eventlog/core/event.hpp>

namespace eventlog {

std::int64_t NowMicros() noexcept {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string FormatTimestamp(std::int64_t micros) {
    std::int64_t seconds = micros / 1'000'000;
    std::int64_t frac = micros % 1'000'000;
    if (frac < 0) {
        frac += 1'000'000;
        seconds -= 1;
    }
    const std::time_t t = static_cast<std::time_t>(seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                       tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

}  // namespace eventlog
