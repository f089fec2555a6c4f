#pragma once

#include <eventlog/relay/relay.hpp>
#include <utility>

namespace eventlog::relay::detail {

/// The relay's test seam as its parts see it: At() calls the StepProbe given to the Relay (none in production, then
/// it does nothing). The relay, its store and its sink share one.
class Probe {
public:
    explicit Probe(StepProbe probe) : probe_(std::move(probe)) {}

    /// Delivery reached `step` (a name listed at StepProbe). May throw, or not return, if a test asked for it.
    void At(const char* step) const {
        if (probe_) probe_(step);
    }

private:
    StepProbe probe_;
};

/// A probe that does nothing: for parts built outside a Relay (tests of one part).
inline const Probe kNoProbe{StepProbe{}};

}  // namespace eventlog::relay::detail
