"""Logits of a Hugging Face checkpoint in transformers (float32), for lowbit's peer test.

usage: python3 transformers_logits.py MODEL_DIR IDS_JSON OUT_F32
Writes (len(ids) x vocab) float32 logits, row-major, to OUT_F32.
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM


def main() -> None:
    model_dir, ids_file, out_file = sys.argv[1:4]
    with open(ids_file, encoding="utf-8") as f:
        ids = json.load(f)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].to(torch.float32).numpy()
    logits.tofile(out_file)


if __name__ == "__main__":
    main()
