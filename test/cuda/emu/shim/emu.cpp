// Runtime of the host emulation (emu.h): the launch loop and the cooperative scheduler.
#include "emu.h"

#include <cstdio>
#include <memory>

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
thread_local EmuBlock* emu_block;
thread_local EmuThread* emu_self;

namespace {
thread_local ucontext_t sched;
thread_local const std::function<void()>* emu_fn;
constexpr size_t STACK = 256 * 1024;

void trampoline() {
  (*emu_fn)();
  emu_self->done = true;  // returning resumes `sched` (uc_link)
}
}  // namespace

std::mutex& emu_atomic_mutex() {
  static std::mutex m;
  return m;
}

void emu_barrier(EmuBarrier& b) {
  if (++b.count == b.n) {
    b.count = 0;
    b.gen++;
    return;  // the last to arrive goes on; the others become runnable
  }
  emu_self->wait = &b;
  emu_self->gen = b.gen;
  swapcontext(&emu_self->ctx, &sched);
}

void emu_run(dim3 grid, dim3 block, size_t smem, const std::function<void()>& fn) {
  const int nt = (int)(block.x * block.y * block.z);
  static thread_local std::vector<std::unique_ptr<char[]>> stacks;
  while ((int)stacks.size() < nt) stacks.emplace_back(new char[STACK]);
  std::vector<EmuThread> th(nt);
  EmuBlock b;
  b.warps.resize((nt + 31) / 32);
  b.dyn.assign(smem + 16, 0xcd);  // shared memory starts as garbage, as on a device
  const std::function<void()>* prev_fn = emu_fn;
  emu_fn = &fn;
  blockDim = block;
  gridDim = grid;
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++) {
        blockIdx = dim3(bx, by, bz);
        b.bar = EmuBarrier{nt, 0, 0};
        for (int w = 0; w < (int)b.warps.size(); w++) b.warps[w].bar = EmuBarrier{std::min(32, nt - 32 * w), 0, 0};
        for (int t = 0; t < nt; t++) {
          EmuThread& e = th[t];
          e.linear = t;
          e.tid = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
          e.wait = nullptr;
          e.done = false;
          getcontext(&e.ctx);
          e.ctx.uc_stack.ss_sp = stacks[t].get();
          e.ctx.uc_stack.ss_size = STACK;
          e.ctx.uc_link = &sched;
          makecontext(&e.ctx, trampoline, 0);
        }
        emu_block = &b;
        for (;;) {
          bool all_done = true, progress = false;
          for (int t = 0; t < nt; t++) {
            EmuThread& e = th[t];
            if (e.done) continue;
            all_done = false;
            if (e.wait && e.wait->gen == e.gen) continue;  // its barrier has not opened yet
            e.wait = nullptr;
            emu_self = &e;
            threadIdx = e.tid;
            swapcontext(&sched, &e.ctx);
            progress = true;
          }
          if (all_done) break;
          if (!progress) {
            std::fprintf(stderr, "emu: deadlock in block (%u, %u, %u): threads wait at a barrier others never reach\n", bx, by, bz);
            std::abort();
          }
        }
      }
  emu_fn = prev_fn;
}
