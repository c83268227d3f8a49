// styleclip/serve/device_queue.h — the one thread that uses the models, and the order of its work.
//
// A server holds one model set; LibTorch modules are used from one thread at a time, and a GPU
// does not get faster by being asked twice at once. So every piece of work that touches the
// models runs on this queue's worker thread. Two kinds: quick tasks (a global-direction preview,
// a seed's rendering: milliseconds) and jobs (an optimisation, a mapper edit, a photo's
// inversion: seconds to minutes). Quick tasks always go first, and a running job lets them in
// between its steps (`run_quick`, called from the job's step hook), so a slider stays live while
// an optimisation runs.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace styleclip {

class DeviceQueue {
 public:
  /// At most `max_quick` quick tasks and `max_jobs` jobs wait at once (beyond that, `post_*`
  /// refuses: the server answers "busy" instead of growing without bound).
  DeviceQueue(size_t max_quick, size_t max_jobs);
  ~DeviceQueue();
  DeviceQueue(const DeviceQueue&) = delete;
  DeviceQueue& operator=(const DeviceQueue&) = delete;

  /// Queues a quick task; false when the queue is full or stopped (the task is dropped).
  bool post_quick(std::function<void()> task);
  /// Queues a job; false when the queue is full or stopped.
  bool post_job(std::function<void()> task);
  /// Runs the quick tasks waiting now; for a job on the worker thread, between its steps.
  void run_quick();
  /// Waiting work, for the server's status.
  [[nodiscard]] size_t waiting_quick() const;
  [[nodiscard]] size_t waiting_jobs() const;
  /// Stops taking work, drops what waits (each dropped task is destroyed unrun: a promise it
  /// holds is broken), lets the running task finish, and joins the worker. Idempotent.
  void stop();

 private:
  void work();
  bool take_quick(std::function<void()>& task);

  size_t max_quick_, max_jobs_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> quick_, jobs_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace styleclip
