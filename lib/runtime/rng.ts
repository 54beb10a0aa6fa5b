/** mulberry32: a small seeded generator (calibration windows, training batches) whose state can be saved and restored. */
export class Mulberry32 {
  private a: number;

  constructor(seed: number) {
    this.a = seed >>> 0;
  }

  /** The state to save (a resumed run restores it with {@link Mulberry32.fromState}). */
  get state(): number {
    return this.a;
  }

  static fromState(state: number): Mulberry32 {
    return new Mulberry32(state);
  }

  /** A uniform number in [0, 1). */
  next(): number {
    this.a = (this.a + 0x6d2b79f5) >>> 0;
    let t = this.a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}
