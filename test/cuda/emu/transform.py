"""Copy one folder of CUDA sources (native/kernels/cuda, native/quant/cuda) into the emulation's
source tree, rewritten for g++ (see shim/emu.h):
   k<<<grid, block[, smem[, stream]]>>>(args)  ->  emu_launch(k, grid, block[, smem[, stream]])(args)
   extern __shared__ float Us[];               ->  float* Us = (float*)emu_dyn_smem();
   the inline-PTX body of mma_16816            ->  emu_mma(...)
usage: python3 transform.py <native/kernels/cuda> <out dir>   (.cu files become .cu.cpp; run.sh calls
       it once per folder)"""
import glob, os, re, sys

src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
for f in glob.glob(os.path.join(src, '*')):
    s = open(f).read()
    # clang-format may break a long launch between the kernel's template arguments and <<<
    s = re.sub(r'([A-Za-z_]\w*(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\s*\(', lambda m: 'emu_launch(%s, %s)(' % (m.group(1), m.group(2)), s, flags=re.S)
    s = re.sub(r'extern __shared__ (\w+) (\w+)\[\];', r'\1* \2 = (\1*)emu_dyn_smem();', s)
    s = re.sub(r'#if defined\(__CUDA_ARCH__\) && __CUDA_ARCH__ >= 800.*?#endif', 'emu_mma(d, a0, a1, a2, a3, b0, b1);', s, flags=re.S)
    out = os.path.join(dst, os.path.basename(f))
    if out.endswith('.cu'):
        out = out[:-3] + '.cu.cpp'
    open(out, 'w').write(s)
