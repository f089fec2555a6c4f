#pragma once

namespace eventlog::relay::detail {

/// Test-only switch: EVENTLOG_FAULT_POINT=<name> makes the process SIGKILL itself the EVENTLOG_FAULT_AFTER-th time
/// (default 1st) it reaches the point `name`; with EVENTLOG_FAULT_ACTION=throw it throws a transient ClickHouse
/// error (code 210) there instead, once. Points: after_claim, after_insert, during_ack (relay.cpp,
/// delivery_store.cpp), before_presence_query, before_insert (clickhouse_sink.cpp). Only tests set it.
void FaultPoint(const char* name);

}  // namespace eventlog::relay::detail
