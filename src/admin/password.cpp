#include <argon2.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <eventlog/admin/password.hpp>
#include <eventlog/core/error.hpp>
#include <vector>

#include "admin/common_passwords.hpp"

namespace eventlog::admin {
namespace {

constexpr std::size_t kSaltBytes = 16;
constexpr std::size_t kDigestBytes = 32;
// Bounds on a setting's costs: a setting read back from the database is ours, but HashWithSetting must not let a
// tampered row make the server allocate gigabytes per login.
constexpr std::uint32_t kMaxMemoryKib = 1U << 20;  // 1 GiB
constexpr std::uint32_t kMaxIterations = 16;
constexpr std::uint32_t kMaxParallelism = 16;

std::string Lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

std::size_t CodePoints(std::string_view text) {
    // Continuation bytes (10xxxxxx) do not start a character.
    return static_cast<std::size_t>(
        std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

bool IsCommon(std::string_view password) {
    const std::string lower = Lower(password);
    std::string_view list = detail::CommonPasswords();
    while (!list.empty()) {
        const auto end = list.find('\n');
        if (list.substr(0, end) == lower) return true;
        if (end == std::string_view::npos) break;
        list.remove_prefix(end + 1);
    }
    return false;
}

std::string Encode(std::string_view password, std::uint32_t t, std::uint32_t m, std::uint32_t p,
                   const unsigned char* salt, std::size_t salt_size) {
    const std::size_t length =
        argon2_encodedlen(t, m, p, static_cast<std::uint32_t>(salt_size), kDigestBytes, Argon2_id);
    std::string encoded(length, '\0');
    const int rc = argon2id_hash_encoded(t, m, p, password.data(), password.size(), salt, salt_size, kDigestBytes,
                                         encoded.data(), encoded.size());
    if (rc != ARGON2_OK) {
        throw Error(ErrorKind::kFatal, std::string("admin: argon2id hashing failed: ") + argon2_error_message(rc));
    }
    encoded.resize(encoded.find('\0'));
    return encoded;
}

/// Standard base64 without padding, as libargon2 writes salts; nullopt for anything else.
std::optional<std::vector<unsigned char>> FromBase64(std::string_view text) {
    static constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::vector<unsigned char> out;
    std::uint32_t buffer = 0;
    int bits = 0;
    for (const char c : text) {
        const auto value = kAlphabet.find(c);
        if (value == std::string_view::npos) return std::nullopt;
        buffer = (buffer << 6) | static_cast<std::uint32_t>(value);
        bits += 6;
        if (bits >= 8) {
            out.push_back(static_cast<unsigned char>((buffer >> (bits - 8)) & 0xFF));
            bits -= 8;
        }
    }
    if (bits >= 6 || (buffer & ((1U << bits) - 1)) != 0) return std::nullopt;  // canonical only
    return out;
}

/// Reads "<key>=<number>" at the front of `text` and what follows it up to `end`.
std::optional<std::uint32_t> TakeParameter(std::string_view& text, std::string_view key, char end) {
    if (text.substr(0, key.size()) != key || text.size() <= key.size() || text[key.size()] != '=') return std::nullopt;
    text.remove_prefix(key.size() + 1);
    std::uint32_t value = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    const auto used = static_cast<std::size_t>(ptr - text.data());
    if (ec != std::errc() || used == 0 || used >= text.size() || text[used] != end) return std::nullopt;
    text.remove_prefix(used + 1);
    return value;
}

}  // namespace

void CheckPassword(std::string_view password, std::string_view username) {
    if (CodePoints(password) < kMinPasswordLength) {
        throw InvalidInputError("password",
                                "too short: expected at least " + std::to_string(kMinPasswordLength) + " characters");
    }
    if (password.size() > kMaxPasswordBytes) {
        throw InvalidInputError("password",
                                "too long: expected at most " + std::to_string(kMaxPasswordBytes) + " bytes");
    }
    if (std::all_of(password.begin(), password.end(), [](unsigned char c) { return std::isdigit(c) != 0; })) {
        throw InvalidInputError("password", "entirely numeric: use letters or other characters too");
    }
    const std::string lower = Lower(password);
    const std::string user = Lower(username);
    if (!user.empty() && (lower == user || (user.size() >= 4 && lower.find(user) != std::string::npos))) {
        throw InvalidInputError("password", "too similar to the username: it contains the username");
    }
    if (IsCommon(password)) {
        throw InvalidInputError("password", "too common: it is on the list of common passwords");
    }
}

std::string HashPassword(std::string_view password, const HashOptions& options) {
    std::array<unsigned char, kSaltBytes> salt{};
    if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1) {
        throw Error(ErrorKind::kFatal, "admin: RAND_bytes failed");
    }
    return Encode(password, options.iterations, options.memory_kib, options.parallelism, salt.data(), salt.size());
}

bool VerifyPassword(std::string_view password, std::string_view encoded) {
    const auto computed = HashWithSetting(password, SettingOf(encoded));
    // The digest is what an attacker guesses at; compare it without an early exit anyway.
    if (!computed || computed->size() != encoded.size()) return false;
    unsigned char differ = 0;
    for (std::size_t i = 0; i < encoded.size(); ++i) differ |= static_cast<unsigned char>((*computed)[i] ^ encoded[i]);
    return differ == 0;
}

std::string_view SettingOf(std::string_view encoded) {
    const auto last = encoded.rfind('$');
    return last == std::string_view::npos ? std::string_view() : encoded.substr(0, last);
}

std::optional<std::string> HashWithSetting(std::string_view password, std::string_view setting) {
    constexpr std::string_view kPrefix = "$argon2id$";
    if (setting.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
    setting.remove_prefix(kPrefix.size());
    const auto version = TakeParameter(setting, "v", '$');
    const auto m = TakeParameter(setting, "m", ',');
    const auto t = TakeParameter(setting, "t", ',');
    const auto p = TakeParameter(setting, "p", '$');
    if (!version || !m || !t || !p || *version != ARGON2_VERSION_13) return std::nullopt;
    if (*m < 8 * *p || *m > kMaxMemoryKib || *t < 1 || *t > kMaxIterations || *p < 1 || *p > kMaxParallelism) {
        return std::nullopt;
    }
    const auto salt = FromBase64(setting);
    if (!salt || salt->size() < ARGON2_MIN_SALT_LENGTH || salt->size() > 64) return std::nullopt;
    if (password.size() > kMaxPasswordBytes) return std::nullopt;
    return Encode(password, *t, *m, *p, salt->data(), salt->size());
}

std::string_view DummySetting() {
    // 16 zero bytes of salt with the default costs.
    static_assert(HashOptions{}.memory_kib == 19'456 && HashOptions{}.iterations == 2 &&
                  HashOptions{}.parallelism == 1);
    return "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA";
}

}  // namespace eventlog::admin
