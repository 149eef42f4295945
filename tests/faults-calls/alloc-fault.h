// A failing allocator for the fault loops: this binary replaces the global operator new/delete
// (alloc-fault.cpp) so that, once armed, the Nth allocation of the process (any thread) throws
// std::bad_alloc (the nothrow forms return null). Only one failure per arming: the allocator is disarmed
// as it fires, so the code handling the failure may allocate again.
#pragma once

#include <cstdint>

namespace rag::test {

// Makes the `n`th operator new from now (n >= 1) fail.
void arm_allocation_failure(int64_t n);
// Disarms; true when the armed allocation failed since arm_allocation_failure().
bool disarm_allocation_failure();
// Allocations counted since the last arm_allocation_failure() (stops at the failing one).
int64_t allocations_since_arm();

// While alive, this thread's allocations are neither counted nor failed: for the test's own client code
// (raw_exchange), whose failures would say nothing about the service.
class ExemptThisThread {
 public:
  ExemptThisThread();
  ~ExemptThisThread();
  ExemptThisThread(const ExemptThisThread&) = delete;
  ExemptThisThread& operator=(const ExemptThisThread&) = delete;
};

}  // namespace rag::test
