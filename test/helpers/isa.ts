/** The fast ISA variants this CPU can run (every one is tested against the reference). */
import { addon } from '../../lib/native';

export function runnableIsas(): string[] {
  const info = addon().info();
  const out: string[] = [];
  for (const isa of ['generic', 'avx2', 'avx512', 'neon']) {
    if (!info.compiledIsas.includes(isa)) continue;
    if (addon().setIsa(isa)) out.push(isa);
  }
  addon().setIsa(info.isa);
  return out;
}
