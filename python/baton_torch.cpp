// baton_torch.cpp: the torch.distributed backend "baton": a c10d::ProcessGroup over a libbaton
// communicator. A thin adapter: it maps tensors, dtypes and reduce ops onto bt_* calls and turns
// their results into c10d Work objects; every collective algorithm, transport, timeout and error
// story lives in libbaton.
//
// Asynchrony: each ProcessGroup has one worker thread that runs its calls in the order they were
// issued (libbaton's calls on one communicator run one at a time, in issue order, on every rank),
// so allreduce() returns at once with a Work and DDP's buckets overlap the backward pass. The
// Work completes its c10 Future (what DDP's comm hook waits on) when the call returns; a failed
// call completes it with a std::runtime_error carrying bt_strerror and bt_last_error (which
// names the peer), which Python sees as RuntimeError. Work::wait spins a few microseconds on the
// completion flag before it blocks, so a small synchronous collective does not pay for a
// condition-variable wake-up.
//
// Tensors: CPU, dense, one tensor per call (the multi-device lists of old APIs are refused);
// non-contiguous tensors are handled through a contiguous copy (copied back for outputs).
// The communicator is created and owned by the Python side (baton/__init__.py, ctypes): this
// file never calls bt_init, so one libbaton communicator serves both APIs.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#include <torch/csrc/utils/pybind.h>

#include <baton.h>

namespace {

using c10d::OpType;
using Clock = std::chrono::steady_clock;

// One collective in flight: its outputs (what result() and the Future return) and its state.
class BatonWork : public c10d::Work {
  public:
    BatonWork(OpType type, std::vector<at::Tensor> outputs)
        : c10d::Work(-1, type), outputs_(std::move(outputs)),
          future_(c10::make_intrusive<c10::ivalue::Future>(
              c10::ListType::create(c10::TensorType::get())))
    {
    }

    bool isCompleted() override { return done_.load(std::memory_order_acquire); }

    bool wait(std::chrono::milliseconds timeout) override
    {
        // A short spin: a small collective often finishes within it.
        auto until = Clock::now() + std::chrono::microseconds(spin_us());
        while (!isCompleted() && Clock::now() < until)
            std::this_thread::yield();
        std::unique_lock<std::mutex> lock(mutex_);
        if (timeout == ::kNoTimeout) {
            cv_.wait(lock, [&] { return completed_; });
        } else if (!cv_.wait_for(lock, timeout, [&] { return completed_; })) {
            throw std::runtime_error("baton: " + what_ + " did not complete within " +
                                     std::to_string(timeout.count()) +
                                     " ms (the wait's timeout; the call keeps running)");
        }
        if (exception_)
            std::rethrow_exception(exception_);
        return true;
    }

    std::vector<at::Tensor> result() override { return outputs_; }
    c10::intrusive_ptr<c10::ivalue::Future> getFuture() override { return future_; }

    // Called once, by the group's worker thread.
    void complete(std::exception_ptr e)
    {
        finish(e);
        done_.store(true, std::memory_order_release);
        if (e)
            future_->setError(e);
        else
            future_->markCompleted(c10::IValue(outputs_));
    }

    std::string what_;

  private:
    static long spin_us()
    {
        static long us = [] {
            const char *v = getenv("BATON_TORCH_SPIN_US");
            return v && *v ? atol(v) : 50L;
        }();
        return us;
    }
    std::vector<at::Tensor> outputs_;
    c10::intrusive_ptr<c10::ivalue::Future> future_;
    std::atomic<bool> done_{false};
};

bt_dtype to_bt(const at::Tensor &t)
{
    switch (t.scalar_type()) {
    case at::kFloat: return BT_FLOAT32;
    case at::kDouble: return BT_FLOAT64;
    case at::kHalf: return BT_FLOAT16;
    case at::kBFloat16: return BT_BFLOAT16;
    case at::kInt: return BT_INT32;
    case at::kLong: return BT_INT64;
    case at::kByte: return BT_UINT8;
    default:
        throw std::invalid_argument(
            std::string("baton: dtype ") + c10::toString(t.scalar_type()) +
            " is not supported; use float32, float64, float16, bfloat16, int32, int64 or uint8");
    }
}

bt_op to_bt(const c10d::ReduceOp &op)
{
    switch (op.op_) {
    case c10d::ReduceOp::SUM: return BT_SUM;
    case c10d::ReduceOp::AVG: return BT_AVG;
    case c10d::ReduceOp::PRODUCT: return BT_PROD;
    case c10d::ReduceOp::MIN: return BT_MIN;
    case c10d::ReduceOp::MAX: return BT_MAX;
    default:
        throw std::invalid_argument("baton: this ReduceOp is not supported (bitwise ops, "
                                    "PREMUL_SUM); use SUM, AVG, PRODUCT, MIN or MAX");
    }
}

const at::Tensor &one(const std::vector<at::Tensor> &v, const char *what)
{
    if (v.size() != 1)
        throw std::invalid_argument(std::string("baton: ") + what + " takes one tensor per call, got " +
                                    std::to_string(v.size()));
    const at::Tensor &t = v[0];
    if (!t.device().is_cpu())
        throw std::invalid_argument(std::string("baton: ") + what + ": tensor on " +
                                    t.device().str() +
                                    "; this backend takes CPU tensors (use nccl for GPU tensors)");
    if (t.layout() != at::kStrided)
        throw std::invalid_argument(std::string("baton: ") + what + ": sparse tensors are not supported");
    return t;
}

// A tensor the call may write through data_ptr: t itself when contiguous, else a copy that
// `back` copies into t after the call.
struct Dense {
    at::Tensor orig, buf;
    explicit Dense(const at::Tensor &t) : orig(t), buf(t.is_contiguous() ? t : t.contiguous()) {}
    void back()
    {
        if (!buf.is_same(orig))
            orig.copy_(buf);
    }
};

class ProcessGroupBaton : public c10d::ProcessGroup {
  public:
    ProcessGroupBaton(int rank, int size, std::uintptr_t comm, std::string name)
        : c10d::ProcessGroup(rank, size), comm_(reinterpret_cast<bt_comm *>(comm)),
          name_(std::move(name))
    {
        int r = -1, n = -1;
        if (!comm_ || bt_comm_rank(comm_, &r) != BT_OK || bt_comm_size(comm_, &n) != BT_OK)
            throw std::invalid_argument("baton: no communicator");
        if (r != rank || n != size)
            throw std::invalid_argument(
                "baton: torch.distributed says rank " + std::to_string(rank) + " of " +
                std::to_string(size) + " but baton's communicator is rank " + std::to_string(r) +
                " of " + std::to_string(n) + "; run the program under `baton run` and pass "
                "init_process_group no rank/world_size of its own");
        thread_ = std::thread([this] { loop(); });
    }

    ~ProcessGroupBaton() override { shutdown(); }

    void shutdown()
    {
        {
            std::lock_guard<std::mutex> lock(qmu_);
            if (stop_)
                return;
            stop_ = true;
        }
        qcv_.notify_one();
        if (thread_.joinable())
            thread_.join();
    }

    const std::string getBackendName() const override { return "baton"; }

    c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor> &ts,
                                             const c10d::BroadcastOptions &o) override
    {
        auto d = std::make_shared<Dense>(one(ts, "broadcast"));
        bt_dtype dt = to_bt(d->buf);
        int root = (int)o.rootRank;
        return post(OpType::BROADCAST, "broadcast", ts, [=] {
            int rc = bt_broadcast(comm_, d->buf.data_ptr(), d->buf.numel(), dt, root);
            d->back();
            return rc;
        });
    }

    c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor> &ts,
                                             const c10d::AllreduceOptions &o) override
    {
        auto d = std::make_shared<Dense>(one(ts, "allreduce"));
        bt_dtype dt = to_bt(d->buf);
        bt_op op = to_bt(o.reduceOp);
        return post(OpType::ALLREDUCE, "allreduce", ts, [=] {
            void *p = d->buf.data_ptr();
            int rc = bt_allreduce(comm_, p, p, d->buf.numel(), dt, op);
            d->back();
            return rc;
        });
    }

    c10::intrusive_ptr<c10d::Work> reduce(std::vector<at::Tensor> &ts,
                                          const c10d::ReduceOptions &o) override
    {
        auto d = std::make_shared<Dense>(one(ts, "reduce"));
        bt_dtype dt = to_bt(d->buf);
        bt_op op = to_bt(o.reduceOp);
        int root = (int)o.rootRank;
        return post(OpType::REDUCE, "reduce", ts, [=] {
            void *p = d->buf.data_ptr();
            int rc = bt_reduce(comm_, p, p, d->buf.numel(), dt, op, root);
            d->back();
            return rc;
        });
    }

    // outs[0] holds size tensors shaped like the input: filled from one contiguous buffer.
    c10::intrusive_ptr<c10d::Work> allgather(std::vector<std::vector<at::Tensor>> &outs,
                                             std::vector<at::Tensor> &ins,
                                             const c10d::AllgatherOptions &) override
    {
        const at::Tensor &in = one(ins, "allgather");
        if (outs.size() != 1 || (int)outs[0].size() != getSize())
            throw std::invalid_argument("baton: allgather wants one list of " +
                                        std::to_string(getSize()) + " output tensors");
        for (auto &t : outs[0])
            check_like(t, in, "allgather");
        auto src = std::make_shared<at::Tensor>(in.contiguous());
        auto flat = std::make_shared<at::Tensor>(at::empty({getSize() * in.numel()}, in.options()));
        auto list = outs[0];
        bt_dtype dt = to_bt(in);
        return post(OpType::ALLGATHER, "allgather", list, [=] {
            int rc = bt_allgather(comm_, src->data_ptr(), flat->data_ptr(), src->numel(), dt);
            for (size_t i = 0; rc == BT_OK && i < list.size(); i++)
                list[i].copy_(flat->narrow(0, (int64_t)i * src->numel(), src->numel()).view_as(list[i]));
            return rc;
        });
    }

    c10::intrusive_ptr<c10d::Work> _allgather_base(at::Tensor &out, at::Tensor &in,
                                                   const c10d::AllgatherOptions &) override
    {
        one({in}, "all_gather_into_tensor");
        if (out.numel() != in.numel() * getSize() || out.scalar_type() != in.scalar_type())
            throw std::invalid_argument("baton: all_gather_into_tensor: the output must hold "
                                        "world_size times the input's elements, same dtype");
        auto src = std::make_shared<at::Tensor>(in.contiguous());
        auto d = std::make_shared<Dense>(out);
        bt_dtype dt = to_bt(in);
        std::vector<at::Tensor> res{out};
        return post(OpType::_ALLGATHER_BASE, "all_gather_into_tensor", res, [=] {
            int rc = bt_allgather(comm_, src->data_ptr(), d->buf.data_ptr(), src->numel(), dt);
            d->back();
            return rc;
        });
    }

    // ins[0] holds size tensors shaped like the output: packed into one buffer first.
    c10::intrusive_ptr<c10d::Work> reduce_scatter(std::vector<at::Tensor> &outs,
                                                  std::vector<std::vector<at::Tensor>> &ins,
                                                  const c10d::ReduceScatterOptions &o) override
    {
        auto d = std::make_shared<Dense>(one(outs, "reduce_scatter"));
        if (ins.size() != 1 || (int)ins[0].size() != getSize())
            throw std::invalid_argument("baton: reduce_scatter wants one list of " +
                                        std::to_string(getSize()) + " input tensors");
        for (auto &t : ins[0])
            check_like(t, d->orig, "reduce_scatter");
        auto flat = std::make_shared<at::Tensor>(
            at::cat(flatten_all(ins[0]), 0)); // a copy: taken now, as the caller's are
        bt_dtype dt = to_bt(d->buf);
        bt_op op = to_bt(o.reduceOp);
        return post(OpType::REDUCE_SCATTER, "reduce_scatter", outs, [=] {
            int rc = bt_reduce_scatter(comm_, flat->data_ptr(), d->buf.data_ptr(), d->buf.numel(),
                                       dt, op);
            d->back();
            return rc;
        });
    }

    c10::intrusive_ptr<c10d::Work> _reduce_scatter_base(at::Tensor &out, at::Tensor &in,
                                                        const c10d::ReduceScatterOptions &o) override
    {
        one({out}, "reduce_scatter_tensor");
        if (in.numel() != out.numel() * getSize() || out.scalar_type() != in.scalar_type())
            throw std::invalid_argument("baton: reduce_scatter_tensor: the input must hold "
                                        "world_size times the output's elements, same dtype");
        auto src = std::make_shared<at::Tensor>(in.contiguous());
        auto d = std::make_shared<Dense>(out);
        bt_dtype dt = to_bt(out);
        bt_op op = to_bt(o.reduceOp);
        std::vector<at::Tensor> res{out};
        return post(OpType::_REDUCE_SCATTER_BASE, "reduce_scatter_tensor", res, [=] {
            int rc = bt_reduce_scatter(comm_, src->data_ptr(), d->buf.data_ptr(), d->buf.numel(),
                                       dt, op);
            d->back();
            return rc;
        });
    }

    c10::intrusive_ptr<c10d::Work> barrier(const c10d::BarrierOptions &) override
    {
        std::vector<at::Tensor> none;
        return post(OpType::BARRIER, "barrier", none, [=] { return bt_barrier(comm_); });
    }

  private:
    struct Job {
        c10::intrusive_ptr<BatonWork> work;
        std::function<int()> run;
    };

    static std::vector<at::Tensor> flatten_all(const std::vector<at::Tensor> &v)
    {
        std::vector<at::Tensor> r;
        for (auto &t : v)
            r.push_back(t.reshape({-1}));
        return r;
    }

    static void check_like(const at::Tensor &t, const at::Tensor &ref, const char *what)
    {
        if (t.numel() != ref.numel() || t.scalar_type() != ref.scalar_type() || !t.device().is_cpu())
            throw std::invalid_argument(std::string("baton: ") + what +
                                        ": every tensor of the list must be a CPU tensor with the "
                                        "other side's dtype and number of elements");
    }

    c10::intrusive_ptr<c10d::Work> post(OpType type, const char *what,
                                        const std::vector<at::Tensor> &outs, std::function<int()> run)
    {
        auto w = c10::make_intrusive<BatonWork>(type, outs);
        w->what_ = std::string(what) + " #" + std::to_string(++seq_) + " of group '" + name_ + "'";
        {
            std::lock_guard<std::mutex> lock(qmu_);
            if (stop_)
                throw std::runtime_error("baton: group '" + name_ + "' was shut down");
            q_.push_back(Job{w, std::move(run)});
        }
        qcv_.notify_one();
        return w;
    }

    void loop()
    {
        for (;;) {
            Job j;
            {
                std::unique_lock<std::mutex> lock(qmu_);
                qcv_.wait(lock, [&] { return stop_ || !q_.empty(); });
                if (q_.empty())
                    return;
                j = std::move(q_.front());
                q_.pop_front();
            }
            std::exception_ptr e;
            try {
                int rc = j.run();
                if (rc != BT_OK)
                    e = std::make_exception_ptr(std::runtime_error(
                        "baton: " + j.work->what_ + " (rank " + std::to_string(getRank()) + " of " +
                        std::to_string(getSize()) + "): " + bt_strerror(rc) + ": " +
                        bt_last_error(comm_)));
            } catch (...) {
                e = std::current_exception();
            }
            j.work->complete(e);
        }
    }

    bt_comm *comm_;
    std::string name_;
    std::mutex qmu_;
    std::condition_variable qcv_;
    std::deque<Job> q_;
    bool stop_ = false;
    uint64_t seq_ = 0;
    std::thread thread_;
};

} // namespace

PYBIND11_MODULE(_torch, m)
{
    m.doc() = "baton's torch.distributed backend (a c10d ProcessGroup over libbaton)";
    py::object base = py::module_::import("torch.distributed").attr("ProcessGroup");
    (void)base; // makes sure c10d's ProcessGroup type is registered before ours
    py::class_<ProcessGroupBaton, c10d::ProcessGroup, c10::intrusive_ptr<ProcessGroupBaton>>(
        m, "ProcessGroupBaton")
        .def(py::init<int, int, std::uintptr_t, std::string>(), py::arg("rank"), py::arg("size"),
             py::arg("comm"), py::arg("name"))
        .def("_shutdown", &ProcessGroupBaton::shutdown,
             py::call_guard<py::gil_scoped_release>());
}
