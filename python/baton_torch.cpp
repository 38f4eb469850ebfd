// baton_torch.cpp: the torch.distributed backend "baton": a c10d::ProcessGroup over a libbaton
// communicator. A thin adapter: it maps tensors, dtypes and reduce ops onto bt_* calls and turns
// their results into c10d Work objects; every collective algorithm, transport, timeout and error
// story lives in libbaton.
//
// Asynchrony: each call is issued at once, on the caller's thread, as libbaton's nonblocking
// form (bt_iallreduce, bt_isend, ...), so the order of a group's calls is the program's, as
// torch.distributed requires, and libbaton's progress thread runs them while the caller goes on
// (DDP's buckets overlap the backward pass). One waiter thread per group waits for the requests
// in issue order (they complete in that order), finishes what the call needs after the data
// arrived (copying into non-contiguous or listed outputs) and completes the Work and its c10
// Future (what DDP's comm hook waits on). A failed call completes it with a std::runtime_error
// carrying bt_strerror and the request's story (which names the peer), which Python sees as
// RuntimeError; an error libbaton returns at issue (bad arguments, a communicator that already
// failed: errors are sticky) is raised by the call itself. The waiter thread is woken only for
// a Work somebody may need completed without waiting on it: when its Future is asked for (DDP's
// comm hook) or its isCompleted() polled; Work::wait takes its own call, and the ones queued
// before it, on the caller's thread, so a synchronous call wakes no thread of this file. Work::
// wait spins a few microseconds on the completion flag before it blocks.
//
// Tensors: CPU, dense, one tensor per call (the multi-device lists of old APIs are refused);
// the tensors (or the contiguous copies made of them) are held until the request completes;
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

    bool isCompleted() override
    {
        bool done = done_.load(std::memory_order_acquire);
        if (!done && kick_)
            kick_();
        return done;
    }

    bool wait(std::chrono::milliseconds timeout) override
    {
        // Still queued for the waiter thread: wait for it here instead (no thread wake-up).
        if (!done() && help_)
            help_();
        // A short spin: a small collective often finishes within it.
        auto until = Clock::now() + std::chrono::microseconds(spin_us());
        while (!done() && Clock::now() < until)
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
    c10::intrusive_ptr<c10::ivalue::Future> getFuture() override
    {
        if (kick_ && !done_.load(std::memory_order_acquire))
            kick_();
        return future_;
    }

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
    std::function<bool()> help_; // runs this work's wait on the caller's thread if not yet taken
    std::function<void()> kick_; // asks the waiter thread to complete this work

  private:
    bool done() const { return done_.load(std::memory_order_acquire); }
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
    // comm: a bt_comm * the Python side made; owned: destroy it with the group (a subgroup's).
    ProcessGroupBaton(int rank, int size, std::uintptr_t comm, std::string name, bool owned)
        : c10d::ProcessGroup(rank, size), comm_(reinterpret_cast<bt_comm *>(comm)),
          name_(std::move(name)), owned_(owned)
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

    // Waits for what is outstanding, stops the waiter, frees a subgroup's communicator.
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
        if (owned_)
            bt_comm_destroy(comm_);
    }

    const std::string getBackendName() const override { return "baton"; }

    c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor> &ts,
                                             const c10d::BroadcastOptions &o) override
    {
        auto d = std::make_shared<Dense>(one(ts, "broadcast"));
        bt_dtype dt = to_bt(d->buf);
        int root = (int)o.rootRank;
        return post(OpType::BROADCAST, "broadcast", ts, [&](bt_request **rq) {
            return bt_ibroadcast(comm_, d->buf.data_ptr(), d->buf.numel(), dt, root, rq);
        }, [d] { d->back(); });
    }

    c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor> &ts,
                                             const c10d::AllreduceOptions &o) override
    {
        auto d = std::make_shared<Dense>(one(ts, "allreduce"));
        bt_dtype dt = to_bt(d->buf);
        bt_op op = to_bt(o.reduceOp);
        return post(OpType::ALLREDUCE, "allreduce", ts, [&](bt_request **rq) {
            void *p = d->buf.data_ptr();
            return bt_iallreduce(comm_, p, p, d->buf.numel(), dt, op, rq);
        }, [d] { d->back(); });
    }

    c10::intrusive_ptr<c10d::Work> reduce(std::vector<at::Tensor> &ts,
                                          const c10d::ReduceOptions &o) override
    {
        auto d = std::make_shared<Dense>(one(ts, "reduce"));
        bt_dtype dt = to_bt(d->buf);
        bt_op op = to_bt(o.reduceOp);
        int root = (int)o.rootRank;
        return post(OpType::REDUCE, "reduce", ts, [&](bt_request **rq) {
            void *p = d->buf.data_ptr();
            return bt_ireduce(comm_, p, p, d->buf.numel(), dt, op, root, rq);
        }, [d] { d->back(); });
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
        return post(OpType::ALLGATHER, "allgather", list, [&](bt_request **rq) {
            return bt_iallgather(comm_, src->data_ptr(), flat->data_ptr(), src->numel(), dt, rq);
        }, [src, flat, list] { unpack(*flat, list); });
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
        return post(OpType::_ALLGATHER_BASE, "all_gather_into_tensor", {out}, [&](bt_request **rq) {
            return bt_iallgather(comm_, src->data_ptr(), d->buf.data_ptr(), src->numel(), dt, rq);
        }, [src, d] { d->back(); });
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
        auto flat = std::make_shared<at::Tensor>(at::cat(flatten_all(ins[0]), 0));
        bt_dtype dt = to_bt(d->buf);
        bt_op op = to_bt(o.reduceOp);
        return post(OpType::REDUCE_SCATTER, "reduce_scatter", outs, [&](bt_request **rq) {
            return bt_ireduce_scatter(comm_, flat->data_ptr(), d->buf.data_ptr(), d->buf.numel(),
                                      dt, op, rq);
        }, [flat, d] { d->back(); });
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
        return post(OpType::_REDUCE_SCATTER_BASE, "reduce_scatter_tensor", {out},
                    [&](bt_request **rq) {
                        return bt_ireduce_scatter(comm_, src->data_ptr(), d->buf.data_ptr(),
                                                  d->buf.numel(), dt, op, rq);
                    },
                    [src, d] { d->back(); });
    }

    // Equal splits: bt_ialltoall; given splits (first-dimension rows): bt_ialltoallv.
    c10::intrusive_ptr<c10d::Work> alltoall_base(at::Tensor &out, at::Tensor &in,
                                                 std::vector<int64_t> &outSplits,
                                                 std::vector<int64_t> &inSplits,
                                                 const c10d::AllToAllOptions &) override
    {
        one({in}, "all_to_all_single");
        one({out}, "all_to_all_single");
        if (out.scalar_type() != in.scalar_type())
            throw std::invalid_argument("baton: all_to_all_single: input and output dtypes differ");
        auto src = std::make_shared<at::Tensor>(in.contiguous());
        auto d = std::make_shared<Dense>(out);
        bt_dtype dt = to_bt(in);
        if (outSplits.empty() && inSplits.empty()) {
            if (in.numel() != out.numel() || in.numel() % getSize())
                throw std::invalid_argument("baton: all_to_all_single: input and output must "
                                            "hold the same number of elements, a multiple of "
                                            "world_size");
            size_t count = (size_t)(in.numel() / getSize());
            return post(OpType::ALLTOALL_BASE, "all_to_all_single", {out}, [&](bt_request **rq) {
                return bt_ialltoall(comm_, src->data_ptr(), d->buf.data_ptr(), count, dt, rq);
            }, [src, d] { d->back(); });
        }
        auto v = std::make_shared<Counts>(getSize());
        v->fill(inSplits, in, true);
        v->fill(outSplits, out, false);
        return post(OpType::ALLTOALL_BASE, "all_to_all_single", {out}, [&](bt_request **rq) {
            return bt_ialltoallv(comm_, src->data_ptr(), v->sc.data(), v->sd.data(),
                                 d->buf.data_ptr(), v->rc.data(), v->rd.data(), dt, rq);
        }, [src, d, v] { d->back(); });
    }

    // Lists: packed into one send buffer, received into one buffer, then copied out.
    c10::intrusive_ptr<c10d::Work> alltoall(std::vector<at::Tensor> &outs,
                                            std::vector<at::Tensor> &ins,
                                            const c10d::AllToAllOptions &) override
    {
        if ((int)outs.size() != getSize() || (int)ins.size() != getSize())
            throw std::invalid_argument("baton: all_to_all wants lists of world_size tensors");
        auto v = std::make_shared<Counts>(getSize());
        size_t so = 0, ro = 0;
        for (int p = 0; p < getSize(); p++) {
            check_like(ins[p], ins[0], "all_to_all", false);
            check_like(outs[p], ins[0], "all_to_all", false);
            v->sc[p] = (size_t)ins[p].numel(), v->sd[p] = so, so += v->sc[p];
            v->rc[p] = (size_t)outs[p].numel(), v->rd[p] = ro, ro += v->rc[p];
        }
        auto src = std::make_shared<at::Tensor>(at::cat(flatten_all(ins), 0));
        auto flat = std::make_shared<at::Tensor>(at::empty({(int64_t)ro}, ins[0].options()));
        bt_dtype dt = to_bt(ins[0]);
        auto list = outs;
        return post(OpType::ALLTOALL, "all_to_all", list, [&](bt_request **rq) {
            return bt_ialltoallv(comm_, src->data_ptr(), v->sc.data(), v->sd.data(),
                                 flat->data_ptr(), v->rc.data(), v->rd.data(), dt, rq);
        }, [src, flat, v, list] { unpack(*flat, list); });
    }

    c10::intrusive_ptr<c10d::Work> send(std::vector<at::Tensor> &ts, int dst, int tag) override
    {
        auto src = std::make_shared<at::Tensor>(one(ts, "send").contiguous());
        bt_dtype dt = to_bt(*src);
        return post(OpType::SEND, "send", ts, [&](bt_request **rq) {
            return bt_isend(comm_, src->data_ptr(), src->numel(), dt, dst, tag, rq);
        }, [src] {});
    }

    c10::intrusive_ptr<c10d::Work> recv(std::vector<at::Tensor> &ts, int srcRank, int tag) override
    {
        auto d = std::make_shared<Dense>(one(ts, "recv"));
        bt_dtype dt = to_bt(d->buf);
        return post(OpType::RECV, "recv", ts, [&](bt_request **rq) {
            return bt_irecv(comm_, d->buf.data_ptr(), d->buf.numel(), dt, srcRank, tag, rq);
        }, [d] { d->back(); });
    }

    c10::intrusive_ptr<c10d::Work> barrier(const c10d::BarrierOptions &) override
    {
        return post(OpType::BARRIER, "barrier", {}, [&](bt_request **rq) {
            return bt_ibarrier(comm_, rq);
        }, [] {});
    }

  private:
    struct Job {
        c10::intrusive_ptr<BatonWork> work;
        bt_request *req;
        std::function<void()> after; // runs once the data arrived (copies into outputs)
        uint64_t seq;                // the call's number in this group
    };

    // alltoallv's counts and displacements, in elements, from split sizes in rows.
    struct Counts {
        std::vector<size_t> sc, sd, rc, rd;
        explicit Counts(int n) : sc(n), sd(n), rc(n), rd(n) {}
        void fill(const std::vector<int64_t> &splits, const at::Tensor &t, bool send)
        {
            size_t n = sc.size();
            int64_t rows = t.dim() ? t.size(0) : 1, row = rows ? t.numel() / rows : 0, off = 0;
            if (!splits.empty() && splits.size() != n)
                throw std::invalid_argument("baton: all_to_all_single: a split list of " +
                                            std::to_string(splits.size()) + " for " +
                                            std::to_string(n) + " ranks");
            if (splits.empty() && rows % (int64_t)n)
                throw std::invalid_argument("baton: all_to_all_single: " + std::to_string(rows) +
                                            " rows do not split evenly over the ranks");
            for (size_t p = 0; p < n; p++) {
                int64_t r = splits.empty() ? rows / (int64_t)n : splits[p];
                (send ? sc : rc)[p] = (size_t)(r * row);
                (send ? sd : rd)[p] = (size_t)off;
                off += r * row;
            }
            if (off != t.numel())
                throw std::invalid_argument("baton: all_to_all_single: the splits do not add up "
                                            "to the tensor's first dimension");
        }
    };

    static std::vector<at::Tensor> flatten_all(const std::vector<at::Tensor> &v)
    {
        std::vector<at::Tensor> r;
        for (auto &t : v)
            r.push_back(t.reshape({-1}));
        return r;
    }

    // Copies consecutive pieces of flat into the tensors of list, in order.
    static void unpack(const at::Tensor &flat, const std::vector<at::Tensor> &list)
    {
        int64_t off = 0;
        for (auto t : list) {
            t.copy_(flat.narrow(0, off, t.numel()).view(t.sizes()));
            off += t.numel();
        }
    }

    static void check_like(const at::Tensor &t, const at::Tensor &ref, const char *what,
                           bool same_count = true)
    {
        if ((same_count && t.numel() != ref.numel()) || t.scalar_type() != ref.scalar_type() ||
            !t.device().is_cpu())
            throw std::invalid_argument(std::string("baton: ") + what +
                                        ": every tensor of the lists must be a CPU tensor of one "
                                        "dtype" + (same_count ? " and size" : ""));
    }

    std::string story(int rc, const std::string &what, const char *detail) const
    {
        return "baton: " + what + " (rank " + std::to_string(getRank()) + " of " +
               std::to_string(getSize()) + "): " + bt_strerror(rc) + ": " + detail;
    }

    // Issues a call (issue fills the request) and queues it for the waiter, under one lock so
    // that the queue's order is the issue order.
    c10::intrusive_ptr<c10d::Work> post(OpType type, const char *what,
                                        const std::vector<at::Tensor> &outs,
                                        const std::function<int(bt_request **)> &issue,
                                        std::function<void()> after)
    {
        auto w = c10::make_intrusive<BatonWork>(type, outs);
        std::unique_lock<std::mutex> lock(qmu_);
        if (stop_)
            throw std::runtime_error("baton: group '" + name_ + "' was shut down");
        w->what_ = std::string(what) + " #" + std::to_string(++seq_) + " of group '" + name_ + "'";
        bt_request *req = nullptr;
        int rc = issue(&req);
        if (rc != BT_OK)
            throw std::runtime_error(story(rc, w->what_, bt_last_error(comm_)));
        uint64_t seq = seq_;
        w->help_ = [this, seq] { return help(seq); };
        w->kick_ = [this, seq] { kick(seq); };
        q_.push_back(Job{w, req, std::move(after), seq});
        return w;
    }

    // Waits for j's request, finishes its outputs and completes its Work.
    void finish_job(Job &j)
    {
        std::exception_ptr e;
        int rc = bt_wait(j.req);
        try {
            if (rc != BT_OK)
                throw std::runtime_error(story(rc, j.work->what_, bt_request_error(j.req)));
            j.after();
        } catch (...) {
            e = std::current_exception();
        }
        bt_request_free(j.req);
        j.work->complete(e);
    }

    // Work::wait of the call numbered seq: the caller takes it and every call queued before it
    // (they complete in issue order anyway); false when the waiter thread already took it.
    bool help(uint64_t seq)
    {
        std::vector<Job> mine;
        {
            std::lock_guard<std::mutex> lock(qmu_);
            while (!q_.empty() && q_.front().seq <= seq) {
                mine.push_back(std::move(q_.front()));
                q_.pop_front();
            }
        }
        for (Job &j : mine)
            finish_job(j);
        return !mine.empty() && mine.back().seq == seq;
    }

    // Asks the waiter thread to complete the calls up to seq (once per call).
    void kick(uint64_t seq)
    {
        {
            std::lock_guard<std::mutex> lock(qmu_);
            if (want_ >= seq)
                return;
            want_ = seq;
        }
        qcv_.notify_one();
    }

    void loop()
    {
        for (;;) {
            Job j;
            {
                std::unique_lock<std::mutex> lock(qmu_);
                qcv_.wait(lock,
                          [&] { return stop_ || (!q_.empty() && q_.front().seq <= want_); });
                if (q_.empty())
                    return;
                j = std::move(q_.front());
                q_.pop_front();
            }
            finish_job(j);
        }
    }

    bt_comm *comm_;
    std::string name_;
    bool owned_;
    std::mutex qmu_;
    std::condition_variable qcv_;
    std::deque<Job> q_;
    bool stop_ = false;
    uint64_t seq_ = 0;  // the last call's number
    uint64_t want_ = 0; // the waiter completes the calls up to this number
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
        .def(py::init<int, int, std::uintptr_t, std::string, bool>(), py::arg("rank"),
             py::arg("size"), py::arg("comm"), py::arg("name"), py::arg("owned"))
        .def("_shutdown", &ProcessGroupBaton::shutdown,
             py::call_guard<py::gil_scoped_release>());
}
