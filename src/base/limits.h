// Every bound of the system, named. Queues, payloads, histories, retries and timeouts take their
// limits from here; related bounds are tied together by static_asserts (TigerBeetle style).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace venture::limits {

using std::chrono::milliseconds;

// Workflow definitions.
inline constexpr std::size_t kDefinitionBytesMax = 1 << 20;  // 1 MiB of JSON/YAML text
inline constexpr std::size_t kNodesMax = 1000;
inline constexpr std::size_t kNeedsPerNodeMax = 1000;
inline constexpr std::size_t kIdLengthMax = 63;
inline constexpr std::size_t kNameLengthMax = 63;
inline constexpr std::size_t kExpressionBytesMax = 16 << 10;
inline constexpr std::size_t kExpressionsMax = 10000;  // per definition
inline constexpr std::size_t kJsonDepthMax = 64;
inline constexpr std::size_t kStringBytesMax = 1 << 20;  // any single string in a definition
inline constexpr std::size_t kTagLengthMax = 63;
inline constexpr std::size_t kDescriptionBytesMax = 16 << 10;
inline constexpr std::size_t kValidationProblemsMax = 1000;   // problems reported per document
inline constexpr std::size_t kPatternSubjectBytesMax = 4096;  // inputs checked by `pattern`

// Runs and nodes.
inline constexpr std::size_t kInputsBytesMax = 1 << 20;
inline constexpr std::size_t kForeachItemsMax = 10000;
inline constexpr std::size_t kMaxParallelMax = 1000;
inline constexpr std::size_t kRepeatIterationsMax = 1000;
inline constexpr std::size_t kAttemptsMax = 100;
inline constexpr std::size_t kNodeOutputBytesMax = 16 << 20;
inline constexpr std::size_t kRunEventsMax = 1 << 20;  // history length of one run
inline constexpr std::size_t kPatchOpsMax = 1000;
inline constexpr std::size_t kErrorMessageBytesMax = 4096;

// Durations.
inline constexpr milliseconds kDurationMax{365LL * 24 * 3600 * 1000};  // one year
inline constexpr milliseconds kTimeoutDefault{std::chrono::hours(1)};
inline constexpr milliseconds kRetryIntervalDefault{1000};
inline constexpr milliseconds kRetryIntervalMaxDefault{std::chrono::minutes(5)};
// How long an approval link stays valid when its approval has no timeout.
inline constexpr milliseconds kApprovalLinkTtl{std::chrono::hours(24 * 7)};
// An approval comment, in bytes.
inline constexpr std::size_t kApprovalCommentBytesMax = 4096;
// The longest wait a remote side may ask for with Retry-After (longer asks are capped).
inline constexpr milliseconds kRetryAfterMax{std::chrono::hours(1)};

// Expressions.
inline constexpr std::size_t kExpressionCacheEntriesMax = 4096;
inline constexpr std::size_t kExpressionOutputsMax = 1;  // a `${{ }}` yields one value
// Sandbox bounds of one jq evaluation (besides kExpressionTimeDefault): range counts, array
// indexes written and array concatenations; strings built by `*` and `+`.
inline constexpr std::size_t kExpressionItemsMax = 1'000'000;
inline constexpr std::size_t kExpressionStringBytesMax = 16 << 20;

// Storage.
inline constexpr std::size_t kBlobThresholdBytes = 64 << 10;  // event data above this -> blob
inline constexpr std::size_t kEventBytesMax = 32 << 20;
inline constexpr std::size_t kAppendBatchEventsMax = 8192;  // one group commit
inline constexpr std::size_t kCheckpointEveryEvents = 4096;
inline constexpr milliseconds kCheckpointEveryDefault{10000};
inline constexpr std::size_t kSnapshotEveryEvents = 256;  // per run
inline constexpr std::size_t kReadPageMax = 10000;
inline constexpr std::size_t kPendingAppendsMax = 65536;  // queued group-commit requests

// Bus.
inline constexpr std::size_t kQueueDepthMax = 1 << 20;
inline constexpr std::size_t kTopicSubscribersMax = 100000;
inline constexpr std::size_t kDeliveriesMax = 100;  // redeliveries of one message
inline constexpr milliseconds kLeaseDefault{30000};
inline constexpr milliseconds kLeaseMax{std::chrono::hours(1)};

// Engine.
inline constexpr std::size_t kInboxMax = 1 << 20;
// Cluster mode: a partition's ownership lease (renewed every quarter of it; a dead engine's runs
// move after at most this long), how long a request forwarded to the owning engine may wait for
// its answer, and the requests forwarded and not yet answered at once.
inline constexpr milliseconds kOwnershipLease{10000};
inline constexpr milliseconds kForwardTimeout{30000};
inline constexpr std::size_t kForwardedMax = 65536;
inline constexpr std::size_t kStepTriggersMax = 16384;  // triggers decided per engine step
// Runs whose timers are due, ticked per engine step; the rest go in the next steps at once. After a
// restart with thousands of overdue timers, runs complete from the first steps on instead of after
// one step that decides (and one commit that writes) them all.
inline constexpr std::size_t kStepTimersMax = 1024;
// Requests and results decided per step when commits are pipelined: a burst is cut into steps of
// this size, so the store writes one while the engine decides the next and the workers run the
// tasks of the one before (one huge step would leave two of the three idle). Measured on workloads
// A and B (1000 runs in lockstep): 512 beat 128, 256 and 1024 (fewer fsyncs than smaller steps).
inline constexpr std::size_t kPipelinedStepTriggers = 512;
inline constexpr std::size_t kActiveRunsMax = 1 << 20;

// HTTP API (#3).
inline constexpr std::size_t kHttpBodyBytesMax = 4 << 20;     // a request body (definitions: 1 MiB)
inline constexpr std::size_t kHttpHeaderBytesMax = 16 << 10;  // request line + headers
inline constexpr milliseconds kHttpReadTimeout{30000};        // one whole request, once begun
inline constexpr milliseconds kHttpIdleTimeout{60000};        // keep-alive between requests
inline constexpr milliseconds kHttpWriteTimeout{30000};       // a response or a stream write
inline constexpr std::size_t kHttpConnectionsMax = 20000;
inline constexpr std::size_t kHttpPipelineMax = 16;        // requests read ahead per connection
inline constexpr milliseconds kStreamKeepalive{15000};     // SSE comment / WebSocket ping
inline constexpr std::size_t kStreamRingEvents = 1 << 16;  // recent events kept for streams
inline constexpr std::size_t kStreamBacklogPage = 1000;    // store read page for a stream
inline constexpr std::size_t kListLimitMax = 500;          // ?limit= on lists (SPEC §3)
inline constexpr std::size_t kTokensMax = 10000;
inline constexpr std::size_t kRateLimitBucketsMax = 100000;  // tokens tracked by the limiter
inline constexpr milliseconds kExpressionTimeDefault{1000};  // one jq evaluation (watchdog)
inline constexpr milliseconds kShutdownDrainMax{10000};      // graceful stop of in-flight work

// Redis, for the rate limits shared by a cluster's API processes (#5): one call in all (waiting
// for a pooled connection, connecting, the command) and the connections one process keeps.
inline constexpr milliseconds kRedisTimeout{500};
inline constexpr std::size_t kRedisConnectionsMax = 16;

// Egress: outbound HTTP (egress::Client, the http node; #4).
inline constexpr milliseconds kEgressTimeoutDefault{30000};  // one request, all redirects
inline constexpr milliseconds kEgressTimeoutMax{std::chrono::minutes(15)};
inline constexpr milliseconds kEgressConnectTimeout{10000};  // one TCP (+TLS) connect
inline constexpr std::size_t kEgressResponseBytesDefault = 10 << 20;
inline constexpr std::size_t kEgressResponseHeaderBytesMax = 64 << 10;  // one response's headers
inline constexpr std::size_t kEgressRequestBytesMax = 16 << 20;         // a request body
inline constexpr int kEgressRedirectsMax = 5;
inline constexpr std::size_t kEgressInFlightDefault = 4096;       // transfers on the multi handle
inline constexpr std::size_t kEgressQueuedMax = 65536;            // submitted, waiting for a slot
inline constexpr std::size_t kEgressConnectionsCachedMax = 1024;  // idle keep-alive connections
// Tasks one WorkerPool holds at once (pulled, not yet acked), across async executors.
inline constexpr std::size_t kWorkerInFlightDefault = 4096;

// Logging.
inline constexpr std::size_t kLogLineBytesMax = 16 << 10;

static_assert(kBlobThresholdBytes < kEventBytesMax);
static_assert(kNodeOutputBytesMax < kEventBytesMax);
static_assert(kMaxParallelMax <= kForeachItemsMax);
static_assert(kRetryIntervalMaxDefault <= kDurationMax);
static_assert(kLeaseDefault <= kLeaseMax);
static_assert(kStepTriggersMax <= kInboxMax);
static_assert(kNeedsPerNodeMax <= kNodesMax);
static_assert(kExpressionStringBytesMax <= kNodeOutputBytesMax);
static_assert(kForeachItemsMax <= kExpressionItemsMax);
static_assert(kEgressResponseBytesDefault <= kNodeOutputBytesMax);
static_assert(kEgressTimeoutDefault <= kEgressTimeoutMax);
static_assert(kEgressConnectTimeout <= kEgressTimeoutMax);
static_assert(kEgressInFlightDefault <= kEgressQueuedMax);
static_assert(kEgressTimeoutMax < kLeaseMax);  // a heartbeated lease outlives any request

}  // namespace venture::limits
