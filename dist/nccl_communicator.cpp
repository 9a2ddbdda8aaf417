#include "dist/nccl_communicator.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "core/cuda_context.h"

namespace mgl::dist {

// An event shared by the Work that waits for it and the watchdog that watches it; destroyed by the
// last of the two.
struct CommEvent {
  cuda::Event event = nullptr;
  CommEvent() { MGL_ON_CUDA(event = cuda::create_event()); }
  ~CommEvent() { MGL_ON_CUDA(cuda::destroy_event(event)); }
  CommEvent(const CommEvent&) = delete;
  CommEvent& operator=(const CommEvent&) = delete;
};

// Watches the pending operations of one communicator from its own thread (see the header).
class NcclWatchdog {
 public:
  NcclWatchdog(void* comm, std::shared_ptr<FaultMonitor> monitor) : comm_(comm), monitor_(std::move(monitor)) {
    thread_ = std::thread([this] { run(); });
  }
  ~NcclWatchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  void watch(std::shared_ptr<CommEvent> done, std::string what) {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.push_back({std::move(done), std::move(what), Clock::now()});
    wake_.notify_all();
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Pending {
    std::shared_ptr<CommEvent> done;
    std::string what;
    Clock::time_point start;
  };
  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      wake_.wait_for(lock, std::chrono::milliseconds(pending_.empty() ? 500 : 2));
      std::string failure;
      while (!pending_.empty()) {
        const Pending& p = pending_.front();
        bool done = false;
        MGL_ON_CUDA(done = cuda::event_done(p.done->event));
        if (done) {
          pending_.pop_front();
          continue;
        }
        if (std::chrono::duration<double>(Clock::now() - p.start).count() > monitor_->timeout_s()) failure = p.what;
        break;
      }
      std::string async;
      MGL_ON_CUDA(async = cuda::nccl_async_error(comm_));
      if (!async.empty()) failure = "NCCL reported '" + async + "'; " + (pending_.empty() ? "" : pending_.front().what);
      if (!failure.empty()) {
        lock.unlock();
        monitor_->fail(failure, /*main_thread=*/false);  // aborts the communicators (on_abort), ends the job
      }
    }
  }

  void* comm_;
  std::shared_ptr<FaultMonitor> monitor_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Pending> pending_;
  bool stop_ = false;
  std::thread thread_;
};

namespace {

class NcclWork final : public Work {
 public:
  NcclWork(Device device, std::shared_ptr<CommEvent> done, std::vector<Tensor> keep)
      : device_(device), done_(done), keep_(std::move(keep)) {}
  ~NcclWork() override { wait(); }
  void wait() override {
    if (!done_) return;
    MGL_ON_CUDA(cuda::stream_wait_event(compute_stream(device_), done_->event));
    done_.reset();
    keep_.clear();  // freed in compute-stream order, after the communication
  }

 private:
  Device device_;
  std::shared_ptr<CommEvent> done_;
  std::vector<Tensor> keep_;
};

cuda::CommReduce comm_reduce(ReduceOp op) { return op == ReduceOp::sum ? cuda::CommReduce::sum : cuda::CommReduce::max; }

}  // namespace

NcclCommunicator::NcclCommunicator(std::string name, int rank, int size, const cuda::NcclUniqueId& id, Device device,
                                   std::shared_ptr<FaultMonitor> monitor)
    : Communicator(std::move(name), rank, size), device_(device) {
  require_cuda(device, "NcclCommunicator");
  DeviceGuard guard(device);
  MGL_ON_CUDA(comm_ = cuda::nccl_init(id, size, rank); stream_ = cuda::create_stream(); ready_ = cuda::create_event());
  // The monitor may outlive this communicator: its abort action checks that the communicator still exists.
  live_ = std::make_shared<std::atomic<void*>>(comm_);
  monitor->on_abort([live = live_] {
    if (void* comm = live->exchange(nullptr)) MGL_ON_CUDA(cuda::nccl_abort(comm));
  });
  watchdog_ = std::make_shared<NcclWatchdog>(comm_, std::move(monitor));
}

NcclCommunicator::~NcclCommunicator() {
  DeviceGuard guard(device_);
  MGL_ON_CUDA(cuda::synchronize_stream(stream_));
  watchdog_.reset();
  if (live_->exchange(nullptr)) MGL_ON_CUDA(cuda::nccl_destroy(comm_));  // unless the monitor aborted it
  MGL_ON_CUDA(cuda::destroy_event(ready_); cuda::destroy_stream(stream_));
}

void NcclCommunicator::require(const char* op, const Tensor& t) const {
  check_tensor(op, t);
  MGL_CHECK(t.device() == device_, name(), " group ", op, ": the NCCL backend of ", device_.str(), " got ",
            t.describe());
}

template <class F>
WorkHandle NcclCommunicator::launch(const std::string& what, std::vector<Tensor> keep, F enqueue) {
  DeviceGuard guard(device_);
  auto done = std::make_shared<CommEvent>();
  MGL_ON_CUDA(cuda::record_event(ready_, compute_stream(device_)); cuda::stream_wait_event(stream_, ready_); enqueue();
              cuda::record_event(done->event, stream_));
  watchdog_->watch(done, name() + " " + what);
  return std::make_unique<NcclWork>(device_, done, std::move(keep));
}

WorkHandle NcclCommunicator::all_reduce(const Tensor& t, ReduceOp op) {
  require("all_reduce", t);
  return launch("all_reduce", {t}, [&] {
    MGL_ON_CUDA(cuda::nccl_all_reduce(t.raw_data(), t.raw_data(), t.numel(), t.dtype(), comm_reduce(op), comm_, stream_));
  });
}
WorkHandle NcclCommunicator::all_gather(const Tensor& in, const Tensor& out) {
  require("all_gather", in);
  check_all_gather(in, out);
  return launch("all_gather", {in, out}, [&] {
    MGL_ON_CUDA(cuda::nccl_all_gather(in.raw_data(), out.raw_data(), in.numel(), in.dtype(), comm_, stream_));
  });
}
WorkHandle NcclCommunicator::reduce_scatter(const Tensor& in, const Tensor& out) {
  require("reduce_scatter", in);
  check_reduce_scatter(in, out);
  return launch("reduce_scatter", {in, out}, [&] {
    MGL_ON_CUDA(cuda::nccl_reduce_scatter(in.raw_data(), out.raw_data(), out.numel(), in.dtype(),
                                          cuda::CommReduce::sum, comm_, stream_));
  });
}
WorkHandle NcclCommunicator::broadcast(const Tensor& t, int root) {
  require("broadcast", t);
  return launch("broadcast", {t}, [&] {
    MGL_ON_CUDA(cuda::nccl_broadcast(t.raw_data(), t.numel(), t.dtype(), root, comm_, stream_));
  });
}
// NCCL matches point-to-point messages between two ranks in issue order; the tag is not needed.
WorkHandle NcclCommunicator::send(const Tensor& t, int peer, int) {
  require("send", t);
  check_peer("send", peer);
  return launch("send to rank " + std::to_string(peer), {t}, [&] {
    MGL_ON_CUDA(cuda::nccl_send(t.raw_data(), t.numel(), t.dtype(), peer, comm_, stream_));
  });
}
WorkHandle NcclCommunicator::recv(const Tensor& t, int peer, int) {
  require("recv", t);
  check_peer("recv", peer);
  return launch("recv from rank " + std::to_string(peer), {t}, [&] {
    MGL_ON_CUDA(cuda::nccl_recv(t.raw_data(), t.numel(), t.dtype(), peer, comm_, stream_));
  });
}
void NcclCommunicator::barrier() {
  const Tensor token = Tensor::zeros({1}, DType::f32, device_);
  all_reduce(token, ReduceOp::sum)->wait();
  synchronize(device_);
}

}  // namespace mgl::dist
