"""Replays the attack catalogue against a running server (127.0.0.1 only, bounded in time) and writes the results
into docs/reliability.md: for each case the sentence the client got, the seconds, the server's RSS growth and the
workspace's disk growth after the request, and whether the server still answers a normal /predict.

    python benchmarks/bounds_catalogue.py

Starts `python app.py` in its own process with a temporary workspace (the tiny model of the tests unless the
shipped checkpoints and samples are there). Exits non-zero when a case is not refused or bounded as expected.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from load_test import connect, prepare, start_server  # noqa: E402

DOC = REPO / "docs" / "reliability.md"
BEGIN, END = "<!-- catalogue:begin -->", "<!-- catalogue:end -->"
SERVER_ENV = {"EASYNET_MAX_ZIP_BYTES": str(100 << 20), "EASYNET_NEW_SESSIONS_PER_HOUR": "20"}


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def cases(tmp: Path, model: str, sample: tuple[str, str]) -> list[tuple[str, str, object]]:
    """(name, what the client must get, a call(client) -> message) of every case."""
    from gradio_client import handle_file

    png = sample[0]

    def zeros_zip(i: int, mib: int) -> str:
        path = tmp / f"zeros{i}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(png, f"part{i}.png")
            zf.writestr("zeros.bin", b"\0" * (mib << 20))
        return handle_file(str(path))

    def liar() -> str:
        from app_helpers import lying_zip  # tests/, on the path through load_test.prepare

        return handle_file(str(lying_zip(tmp / "liar.zip", 300_000)))

    def picture(name: str, side: int) -> str:
        Image.new("RGB", (side, side), (120, 120, 120)).save(tmp / name)
        return handle_file(str(tmp / name))

    def wrong_depth() -> str:
        import tifffile

        tifffile.imwrite(tmp / "wide.tiff", np.zeros((6000, 6000, 3), np.float32), compression="zlib")
        return handle_file(str(tmp / "wide.tiff"))

    def clash_zip() -> str:
        with zipfile.ZipFile(tmp / "clash.zip", "w") as zf:
            zf.writestr("part", b"a file")
            zf.writestr("part/x.png", b"and a folder")
        return handle_file(str(tmp / "clash.zip"))

    def raw_nan_steps(client) -> str:
        """steps: NaN in raw JSON (a client library cannot send it: JSON has no NaN, Python's parser reads it)."""
        import httpx

        body = '{"data": ["synthetic", "gasket", null, null, null, NaN]}'
        base = client.src.rstrip("/")
        with httpx.Client(timeout=60) as http:
            sent = http.post(f"{base}/gradio_api/call/finetune_start", content=body,
                             headers={"content-type": "application/json"})  # fmt: skip
            sent.raise_for_status()
            stream = http.get(f"{base}/gradio_api/call/finetune_start/{sent.json()['event_id']}").text
        data = [line[5:].strip() for line in stream.splitlines() if line.startswith("data:")]
        return str(json.loads(data[-1]).get("error")) if data and data[-1].startswith("{") else stream

    def fresh_sessions(client) -> str:
        from gradio_client import Client

        for _ in range(25):
            c = Client(client.src, verbose=False)
            c.predict(None, api_name="/session")
            c.close()
        return "all 25 accepted"

    def minted_jobs(client) -> str:
        from gradio_client import Client

        archive, accepted, message = handle_file(str(tmp / "toy.zip")), [], "three jobs queued"
        for _ in range(3):
            c = Client(client.src, verbose=False)
            try:
                job_id, status, _ = c.predict("zip", None, None, archive, "", 100_000, api_name="/finetune_start")
                accepted.append((job_id, status["token"]))
            except Exception as err:  # the refusal
                message = str(err)
            c.close()
        for job_id, token in accepted:  # the caller's token cancels a job from any session
            client.predict(job_id, token, api_name="/finetune_cancel")
        return message

    return [
        ("batch: 3 zips of 64 MiB zeros, 100 MiB per request", "space left for this request's zips",
         lambda c: c.predict([zeros_zip(i, 64) for i in range(3)], model, "control", 1.0, api_name="/batch")),
        ("fine-tune: 3 fresh sessions from one address", "your address already has 2", minted_jobs),
        ("fine-tune: a zip whose end record claims 1 of 300,000 entries", "holds more entries than the limit",
         lambda c: c.predict("zip", None, None, liar(), "", 2, api_name="/finetune_start")),
        ("predict: 8000x8000 PNG (64 MP)", "more than the limit of 40000000 pixels",
         lambda c: c.predict(picture("huge.png", 8000), None, model, "control", api_name="/predict")),
        ("predict: 6000x6000 PNG (36 MP, within the pixel limit)", "answered",
         lambda c: "answered" if c.predict(picture("big.png", 6000), None, model, "control", api_name="/predict")
         else "no answer"),
        ("predict: a 6000x6000 zlib depth TIFF beside a small RGB", "they must be pixel-aligned",
         lambda c: c.predict(handle_file(png), wrong_depth(), model, "control", api_name="/predict")),
        ("annotate: an 8000x8000 editor picture", "more than the limit of 40000000 pixels",
         lambda c: c.predict("p", "NG", "train", "scratch", handle_file(png), None,
                             {"background": picture("editor.png", 8000), "layers": [], "composite": None},
                             model, None, api_name="/annotate_save")),
        ("batch: a zip where a file and a folder share a name", "share one name",
         lambda c: c.predict([clash_zip()], model, "control", 1.0, api_name="/batch")),
        ("fine-tune: steps NaN", "steps must be a whole number",
         raw_nan_steps),
        ("evaluate: a missing annotated category", "your annotated set has no category",
         lambda c: c.predict("annotated", None, None, None, "not_there", model, api_name="/evaluate_category")),
        ("session: 25 new sessions from one address (limit 20 an hour)", "too many new sessions", fresh_sessions),
    ]  # fmt: skip


def run() -> list[dict]:
    tmp = Path(tempfile.mkdtemp(prefix="easynet-bounds-"))
    os.environ["EASYNET_WORKSPACE"] = str(tmp / "workspace")
    os.environ.update(SERVER_ENV)
    model, samples, archive = prepare(tmp / "workspace")
    if archive != tmp / "toy.zip":  # load_test.prepare writes it beside the workspace: tmp/toy.zip already
        shutil.copy(archive, tmp / "toy.zip")
    server, url = start_server(tmp / "server.log")
    rows = []
    try:
        import psutil

        client = connect(url, server, tmp / "server.log")
        proc = psutil.Process(server.pid)
        for name, expected, call in cases(tmp, model, samples[0]):
            rss, disk, start = proc.memory_info().rss, folder_mb(tmp / "workspace"), time.time()
            try:
                got = str(call(client))
            except Exception as err:  # the sentence the client got
                got = str(err)
            seconds = time.time() - start
            alive = bool(client.predict(*map(_file, samples[0]), model, "control", api_name="/predict"))
            rows.append(
                {
                    "case": name,
                    "expected": expected,
                    "got": got.replace("\n", " ")[:160],
                    "ok": expected in got and alive,
                    "seconds": round(seconds, 1),
                    "rss_growth_mb": round((proc.memory_info().rss - rss) / 2**20),
                    "disk_growth_mb": round(folder_mb(tmp / "workspace") - disk, 1),
                    "still_answers": alive,
                }
            )
            print(rows[-1], flush=True)
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _file(path: str):
    from gradio_client import handle_file

    return handle_file(path)


def write(rows: list[dict]) -> None:
    import platform

    lines = [
        "| case | the client got | s | RSS growth MB | disk after MB | answers after | as expected |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['got'].replace('|', '/')} | {r['seconds']} | {r['rss_growth_mb']} | "
            f"{r['disk_growth_mb']} | {'yes' if r['still_answers'] else '**no**'} | {'yes' if r['ok'] else '**no**'} |"
        )
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    block = (
        f"{BEGIN}\n`python benchmarks/bounds_catalogue.py` against `python app.py` on 127.0.0.1 ({machine}; server "
        f"settings {', '.join(f'{k}={v}' for k, v in SERVER_ENV.items())}):\n\n" + "\n".join(lines) + f"\n{END}"
    )
    text = DOC.read_text()
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n## The attack catalogue, replayed\n\n" + block + "\n"
    DOC.write_text(text)


def main() -> int:
    rows = run()
    write(rows)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
