"""``pse-app``: a local web page to personalize, enhance, compare and listen live.

    pse-app                      # http://127.0.0.1:8000, work dir ./pse_app
    pse-app --port 9000 --work_dir ~/my_voice

The page (``static/``) talks to this aiohttp server through a small JSON API:

    GET  /api/state                          recordings, models, personalization, limits
    POST /api/recordings/{noisy|clean}       multipart files -> accepted / rejected (with reasons); both
                                             recording calls also return the epoch fields' defaults
    DELETE /api/recordings/{kind}/{name}
    POST /api/personalize {max_epoch, fsl_max_epoch, causal}; POST /api/personalize/cancel
    POST /api/enhance                        multipart "model" + files -> players, spectrograms, scores
    GET  /api/models/{id}/download?format=zip|onnx|onnx_streaming
    GET  /files/{enhanced|live}/...          enhanced audio, spectrograms, live captures
    WS   /ws/live?model=ID                   float32 16-kHz chunks in, enhanced chunks out

It binds to 127.0.0.1 unless told otherwise, refuses uploads over ``--max_upload_mb`` and
files that are not audio, and writes only under its work dir.
"""

import argparse
import asyncio
import ipaddress
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from aiohttp import WSMsgType, web

from espnet2_pse.app import media
from espnet2_pse.app.jobs import PersonalizeJob, parse_personalize_args
from espnet2_pse.app.workspace import KINDS, Workspace, load_upload, safe_stem
from espnet2_pse.data.audio import AudioError, resample
from espnet2_pse.scoring.files import load_mono, write_float_wav

logger = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
GENERALIST = Path(__file__).resolve().parents[1] / "pretrained" / "generalist_stft.zip"
# Live audio arrives in 16-ms chunks at 16 kHz; a longer message is refused.
LIVE_CHUNK = 256
LIVE_MAX_CHUNK = 16000
# The rest of an oversized request body is read (and dropped) up to this many bytes so that the
# browser gets the refusal instead of a reset connection.
DRAIN_LIMIT = 64 << 20


class Models:
    """The models the page offers: the shipped generalist and, once written, the personal one.
    Loaded enhancers are kept until their file changes."""

    def __init__(self, workspace: Workspace):
        self.paths = {"generalist": GENERALIST, "personal": workspace.root / "models" / "personal.zip"}
        self.labels = {"generalist": "shipped generalist", "personal": "my personal model"}
        self._loaded: Dict[str, Tuple[float, object, bool]] = {}
        self._lock = threading.Lock()

    def path(self, model_id: str) -> Path:
        if model_id not in self.paths:
            raise ValueError(f"unknown model {model_id!r}; choose from {', '.join(self.paths)}")
        path = self.paths[model_id]
        if not path.is_file():
            raise FileNotFoundError(f"there is no {self.labels[model_id]} yet: personalize first")
        return path

    def get(self, model_id: str):
        """(enhancer, streams) for a model id, loading it when its file is new or changed."""
        import espnet2_pse
        from espnet2_pse.export.fast_model import UnsupportedModelError

        path = self.path(model_id)
        with self._lock:
            mtime = path.stat().st_mtime
            cached = self._loaded.get(model_id)
            if cached is None or cached[0] != mtime:
                enhancer = espnet2_pse.load(path)
                try:
                    enhancer.stream()
                    streams = True
                except UnsupportedModelError:
                    streams = False
                cached = self._loaded[model_id] = (mtime, enhancer, streams)
            return cached[1], cached[2]

    def describe(self) -> List[dict]:
        entries = []
        for model_id in self.paths:
            if self.paths[model_id].is_file():
                _, streams = self.get(model_id)
                entries.append({"id": model_id, "label": self.labels[model_id], "live": streams})
        return entries


class App:
    def __init__(self, work_dir: Path, max_upload_mb: float = 200, personalize_options: Optional[dict] = None):
        self.workspace = Workspace(work_dir)
        self.models = Models(self.workspace)
        self.job = PersonalizeJob(self.workspace, personalize_options)
        self.max_upload_bytes = int(max_upload_mb * (1 << 20))
        # CPU work of requests runs here, one at a time, off the event loop.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pse-app")

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def web_app(self) -> web.Application:
        app = web.Application(middlewares=[json_errors])
        app.add_routes([
            web.get("/", self.page),
            web.static("/static", STATIC),
            web.get("/api/state", self.state),
            web.post("/api/recordings/{kind}", self.upload_recordings),
            web.delete("/api/recordings/{kind}/{name}", self.remove_recording),
            web.get("/api/personalize", self.personalize_status),
            web.post("/api/personalize", self.personalize_start),
            web.post("/api/personalize/cancel", self.personalize_cancel),
            web.post("/api/enhance", self.enhance),
            web.get("/api/models/{model}/download", self.download_model),
            web.get("/files/{path:.+}", self.serve_file),
            web.get("/ws/live", self.live),
        ])
        app.on_shutdown.append(self._shutdown)
        return app

    async def _shutdown(self, _app) -> None:
        self.job.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    # --- state and recordings -------------------------------------------------------------

    async def page(self, _request):
        return web.FileResponse(STATIC / "index.html")

    async def state(self, _request):
        models = await self.run(self.models.describe)
        return web.json_response({
            "recordings": {k: self.workspace.recordings(k) for k in KINDS},
            "models": models,
            "personalize": self.job.status(),
            "personalize_defaults": self.job.defaults(),
            "max_upload_mb": self.max_upload_bytes / (1 << 20),
        })

    async def upload_recordings(self, request):
        kind = request.match_info["kind"]
        self.workspace.recordings_dir(kind)  # unknown kinds refused before reading the body
        self.refuse_while_personalizing()
        _, files = await self.read_upload(request)
        accepted, rejected = [], []
        try:
            for filename, path in files:
                try:
                    accepted.append(await self.run(self.workspace.add_recording, kind, filename, path))
                except AudioError as err:
                    rejected.append({"name": filename, "reason": err.reason})
        finally:
            for _, path in files:
                path.unlink(missing_ok=True)
        return web.json_response({"accepted": accepted, "rejected": rejected,
                                  "recordings": self.workspace.recordings(kind),
                                  "personalize_defaults": self.job.defaults()})

    async def remove_recording(self, request):
        kind, name = request.match_info["kind"], request.match_info["name"]
        self.refuse_while_personalizing()
        self.workspace.remove_recording(kind, name)
        return web.json_response({"recordings": self.workspace.recordings(kind),
                                  "personalize_defaults": self.job.defaults()})

    def refuse_while_personalizing(self) -> None:
        if self.job.running():
            raise ValueError("the recordings cannot change while a personalization reads them; wait or cancel it")

    async def read_upload(self, request) -> Tuple[Dict[str, str], List[Tuple[str, Path]]]:
        """Multipart body -> (text fields, [(browser file name, temporary file)]). Refuses a
        body over the upload limit (413) without keeping any of it."""
        limit_mb = self.max_upload_bytes / (1 << 20)
        too_big = web.HTTPRequestEntityTooLarge(
            max_size=self.max_upload_bytes, actual_size=request.content_length or 0,
            text=json.dumps({"error": f"the upload is larger than the {limit_mb:g} MB limit of this app"}),
            content_type="application/json")
        if request.content_length is not None and request.content_length > self.max_upload_bytes:
            await _drain(request)
            raise too_big
        fields, files, size = {}, [], 0
        try:
            reader = await request.multipart()
            async for part in reader:
                if part.filename is None:
                    fields[part.name] = (await part.text())[:200]
                    continue
                path = self.workspace.tmp_file(part.filename)
                files.append((part.filename, path))
                with open(path, "wb") as out:
                    while chunk := await part.read_chunk(1 << 16):
                        size += len(chunk)
                        if size > self.max_upload_bytes:
                            await _drain(request)
                            raise too_big
                        out.write(chunk)
        except BaseException:
            for _, path in files:
                path.unlink(missing_ok=True)
            raise
        return fields, files

    # --- personalization ------------------------------------------------------------------

    async def personalize_status(self, _request):
        return web.json_response(self.job.status())

    async def personalize_start(self, request):
        options = await request.json() if request.can_read_body else {}
        if not isinstance(options, dict):
            raise ValueError("expected a JSON object of options")
        return web.json_response(self.job.start(options))

    async def personalize_cancel(self, _request):
        return web.json_response(self.job.cancel())

    # --- enhancement ----------------------------------------------------------------------

    async def enhance(self, request):
        fields, files = await self.read_upload(request)
        model_id = fields.get("model", "generalist")
        results, rejected = [], []
        try:
            for filename, path in files:
                try:
                    results.append(await self.run(self.enhance_one, model_id, filename, path))
                except AudioError as err:
                    rejected.append({"name": filename, "reason": err.reason})
        finally:
            for _, path in files:
                path.unlink(missing_ok=True)
        return web.json_response({"results": results, "rejected": rejected})

    def enhance_one(self, model_id: str, filename: str, upload: Path) -> dict:
        """Enhance one upload into a fresh enhanced/<id>/ folder: the input (as sent), the
        enhanced file (the input's rate, mono WAV), both spectrograms and both scores."""
        enhancer, _ = self.models.get(model_id)
        noisy = load_upload(upload, filename)
        folder = self.workspace.new_item("enhanced")
        stem = safe_stem(filename)
        source = folder / f"{stem}_noisy{upload.suffix}"
        upload.replace(source)
        target = folder / f"{stem}_enhanced.wav"
        enhancer.enhance_file(source, target)
        enhanced, rate = load_mono(target)
        enhanced = resample(enhanced.astype(np.float32), rate, 16000)
        pictures = media.spectrogram_pngs({"noisy": noisy, "enhanced": enhanced}, 16000, folder, stem)
        urls = self.workspace.url
        return {
            "name": filename, "model": model_id, "seconds": round(len(noisy) / 16000, 2),
            "audio": {"noisy": urls(source), "enhanced": urls(target)},
            "spectrogram": {k: urls(p) for k, p in pictures.items()},
            "scores": {"noisy": media.reference_free_scores(noisy, 16000),
                       "enhanced": media.reference_free_scores(enhanced, 16000)},
            "download": urls(target) + "?download=1",
        }

    async def download_model(self, request):
        model_id, kind = request.match_info["model"], request.query.get("format", "zip")
        formats = {"zip": None, "onnx": False, "onnx_streaming": True}
        if kind not in formats:
            raise ValueError(f"unknown format {kind!r}; choose from {', '.join(formats)}")
        path = self.models.path(model_id)
        if formats[kind] is not None:
            path = await self.run(self.export, model_id, formats[kind])
        return _attachment(path, f"{model_id}{'_streaming' if formats[kind] else ''}{path.suffix}")

    def export(self, model_id: str, streaming: bool) -> Path:
        from espnet2_pse.export.fast_model import UnsupportedModelError

        enhancer, _ = self.models.get(model_id)
        stamp = int(self.models.path(model_id).stat().st_mtime)
        path = self.workspace.root / "exports" / f"{model_id}_{stamp}{'_streaming' if streaming else ''}.onnx"
        if not path.is_file():
            try:
                enhancer.export_onnx(path, streaming=streaming)
            except UnsupportedModelError as err:
                raise ValueError(f"the {self.models.labels[model_id]} cannot be exported: {err}") from None
        return path

    async def serve_file(self, request):
        relative = request.match_info["path"]
        path = self.workspace.inside(relative)
        if relative.split("/")[0] not in ("enhanced", "live") or not path.is_file():
            raise FileNotFoundError(f"no file {relative}")
        return _attachment(path, path.name) if "download" in request.query else web.FileResponse(path)

    # --- live -----------------------------------------------------------------------------

    async def live(self, request):
        """One live session: binary messages of float32 little-endian samples at 16 kHz in,
        one binary message of enhanced samples back per message (possibly empty while the
        stream fills), text ``{"type": "stop"}`` ends it: the rest is sent and the session's
        input and output are saved under live/<id>/."""
        ws = web.WebSocketResponse(max_msg_size=4 * LIVE_MAX_CHUNK + 1024)
        await ws.prepare(request)
        try:
            enhancer, streams = await self.run(self.models.get, request.query.get("model", "personal"))
            if not streams:
                raise ValueError("this model is not causal and cannot run live; personalize with 'causal' ticked")
        except (ValueError, FileNotFoundError) as err:
            await ws.send_json({"type": "error", "message": str(err)})
            await ws.close()
            return ws
        session = enhancer.stream()
        await ws.send_json({"type": "ready", "sample_rate": enhancer.sample_rate, "chunk": LIVE_CHUNK,
                            "latency_ms": session.spec.latency_ms})
        inputs, outputs = [], []
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                whole = len(message.data) % 4 == 0
                chunk = np.frombuffer(message.data if whole else b"", dtype="<f4")
                if chunk.size == 0 or chunk.size > LIVE_MAX_CHUNK or not np.isfinite(chunk).all():
                    await ws.send_json({"type": "error", "message": "expected 1 to 16000 finite float32 samples"})
                    break
                out = session.push(chunk)  # a few ms: inline keeps the chunks in order
                inputs.append(chunk)
                outputs.append(out)
                await ws.send_bytes(out.astype("<f4").tobytes())
            elif message.type == WSMsgType.TEXT and _is_stop(message.data):
                if inputs:
                    rest = session.finish()
                    outputs.append(rest)
                    await ws.send_bytes(rest.astype("<f4").tobytes())
                    await ws.send_json({"type": "saved", **self.save_live(inputs, outputs, enhancer.sample_rate)})
                break
        await ws.close()
        return ws

    def save_live(self, inputs, outputs, sample_rate: int) -> dict:
        folder = self.workspace.new_item("live")
        signals = {"input": np.concatenate(inputs), "output": np.concatenate(outputs)}
        for name, x in signals.items():
            write_float_wav(folder / f"{name}.wav", x, sample_rate)
        return {"id": folder.name, "seconds": round(len(signals["input"]) / sample_rate, 2),
                **{name: self.workspace.url(folder / f"{name}.wav") for name in signals}}


@web.middleware
async def json_errors(request, handler):
    """Refusals as ``{"error": message}`` with a fitting status, for the page to show."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except ValueError as err:  # refused input (JSON syntax errors included)
        status, message = 400, str(err)
    except FileNotFoundError as err:
        status, message = 404, str(err)
    except PermissionError as err:
        status, message = 403, str(err)
    except Exception as err:  # shown on the page; the trace goes to the terminal
        logger.exception("%s %s failed", request.method, request.path)
        status, message = 500, f"{type(err).__name__}: {err}"
    return web.json_response({"error": message}, status=status)


async def _drain(request) -> None:
    read = 0
    while read < DRAIN_LIMIT and (chunk := await request.content.read(1 << 16)):
        read += len(chunk)


def _is_stop(text: str) -> bool:
    try:
        return json.loads(text).get("type") == "stop"
    except (ValueError, AttributeError):
        return False


def _attachment(path: Path, name: str) -> web.FileResponse:
    return web.FileResponse(path, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pse-app", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but a loopback address exposes your recordings to the network")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--work_dir", default="pse_app", help="where recordings, models and results are kept")
    p.add_argument("--max_upload_mb", type=float, default=200, help="largest accepted upload (all files of one request)")
    p.add_argument("--personalize_args", type=parse_personalize_args, default={},
                   help="pse-personalize options for the page's personalizations, e.g. '--nj 2 --seed 1'")
    p.add_argument("--num_threads", type=int, default=None, help="PyTorch CPU threads (default: PyTorch's)")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s pse-app %(levelname)s %(message)s")
    if args.num_threads:
        import torch

        torch.set_num_threads(args.num_threads)
    if not _is_loopback(args.host):
        logger.warning("listening on %s: anyone who can reach this machine can use the page and your recordings",
                       args.host)
    app = App(Path(args.work_dir), args.max_upload_mb, args.personalize_args)
    print(f"pse-app: open http://{args.host}:{args.port} (work dir {app.workspace.root}; Ctrl-C stops)", flush=True)
    web.run_app(app.web_app(), host=args.host, port=args.port, print=None)
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


if __name__ == "__main__":
    raise SystemExit(main())
