// The model thread's queue (device_queue.h): quick tasks before jobs, and inside jobs.
#include <styleclip/serve/device_queue.h>

#include <utility>

namespace styleclip {

DeviceQueue::DeviceQueue(size_t max_quick, size_t max_jobs)
    : max_quick_(max_quick), max_jobs_(max_jobs), worker_([this] { work(); }) {}

DeviceQueue::~DeviceQueue() { stop(); }

bool DeviceQueue::post_quick(std::function<void()> task) {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ || quick_.size() >= max_quick_) return false;
    quick_.push_back(std::move(task));
  }
  wake_.notify_one();
  return true;
}

bool DeviceQueue::post_job(std::function<void()> task) {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ || jobs_.size() >= max_jobs_) return false;
    jobs_.push_back(std::move(task));
  }
  wake_.notify_one();
  return true;
}

bool DeviceQueue::take_quick(std::function<void()>& task) {
  const std::lock_guard<std::mutex> lock(mutex_);
  if (quick_.empty() || stopping_) return false;
  task = std::move(quick_.front());
  quick_.pop_front();
  return true;
}

void DeviceQueue::run_quick() {
  std::function<void()> task;
  while (take_quick(task)) {
    task();
    task = nullptr;  // its captures (a promise, tensors) go now, not at the next take
  }
}

size_t DeviceQueue::waiting_quick() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return quick_.size();
}

size_t DeviceQueue::waiting_jobs() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return jobs_.size();
}

void DeviceQueue::work() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !quick_.empty() || !jobs_.empty(); });
      if (stopping_) return;
      auto& from = quick_.empty() ? jobs_ : quick_;
      task = std::move(from.front());
      from.pop_front();
    }
    task();  // tasks catch their own errors: they report them to whoever waits
  }
}

void DeviceQueue::stop() {
  std::deque<std::function<void()>> dropped_quick, dropped_jobs;
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    dropped_quick.swap(quick_);
    dropped_jobs.swap(jobs_);
  }
  wake_.notify_all();
  dropped_quick.clear();  // outside the lock: a broken promise wakes its waiter
  dropped_jobs.clear();
  if (worker_.joinable() && worker_.get_id() != std::this_thread::get_id()) worker_.join();
}

}  // namespace styleclip
