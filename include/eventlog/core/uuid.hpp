#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace eventlog {

/// A 128-bit UUID in RFC 4122 byte order. Value type, trivially copyable.
struct Uuid {
    std::array<std::uint8_t, 16> bytes{};

    /// A random (version 4) UUID from a CSPRNG.
    static Uuid Random();
    /// A time-ordered (version 7, RFC 9562) UUID: the Unix time of `now` in milliseconds, then 74 random bits from
    /// a CSPRNG. Ids made later sort after earlier ones (to the millisecond), so a B-tree on them grows at its
    /// right edge instead of touching a random page per insert.
    static Uuid TimeOrdered(std::chrono::system_clock::time_point now = std::chrono::system_clock::now());
    /// Parses the canonical 36-character form (case-insensitive); nullopt when malformed.
    static std::optional<Uuid> Parse(std::string_view text);
    /// The canonical lower-case 36-character form.
    std::string ToString() const;

    bool operator==(const Uuid&) const = default;
    auto operator<=>(const Uuid&) const = default;
};

}  // namespace eventlog
