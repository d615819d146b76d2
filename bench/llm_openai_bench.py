"""The Python `openai` client (AsyncOpenAI + asyncio) against the same server, for comparison with
`cargo run --example bench_client`. Prints the same JSON line.

usage: python bench/llm_openai_bench.py URL CONCURRENCY REQUESTS
"""
import asyncio
import json
import sys
import time

from openai import AsyncOpenAI


async def main(url: str, conc: int, n: int) -> None:
    client = AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
    sem = asyncio.Semaphore(conc)

    async def one(i: int) -> bool:
        async with sem:
            r = await client.chat.completions.create(
                model="fake-model",
                messages=[
                    {"role": "system", "content": "You are a medical expert. Answer with one letter."},
                    {"role": "user", "content": f"Question {i}: which vitamin deficiency causes scurvy? A) A B) B12 C) C D) D"},
                ],
                max_tokens=16,
                temperature=0.0,
            )
            return bool(r.choices[0].message.content)

    await asyncio.gather(*(one(-1 - i) for i in range(min(conc, n))))  # warm the pool
    cpu0, t0 = time.process_time(), time.perf_counter()
    ok = sum(await asyncio.gather(*(one(i) for i in range(n))))
    secs, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(json.dumps({"client": "python-openai", "concurrency": conc, "requests": n, "ok": ok,
                      "seconds": round(secs, 3), "rps": round(n / secs, 1), "cpu_s": round(cpu, 3),
                      "cpu_us_per_req": round(cpu / n * 1e6, 1)}))
    await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
