"""edgetl doctor: what this machine can run, and why not."""
from __future__ import annotations

import json

import click


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout, for scripts.")
def doctor_cmd(as_json):
    """Say what this machine can run and why not: the CPU's instruction sets and which INT8
    CPU models compute exactly here, every backend with its version and devices, the GPU
    with its driver's and CUDA runtime's versions, TensorRT and its DLA cores."""
    from rich.markup import escape
    from rich.table import Table

    from edgetl.core.progress import print_table, results_console
    from edgetl.runtime.doctor import doctor

    facts = doctor()
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    cpu, gpu = facts["cpu"], facts["gpu"]
    isa = ", ".join(name for name, has in cpu["isa"].items() if has) or "none of note"
    click.echo(f"edgetl {facts['edgetl']}, Python {facts['python']}")
    click.echo(f"CPU: {cpu['model']} ({cpu['arch']}, {cpu['kind']}): {isa}; {cpu['usable_cores']} usable cores, "
               f"{cpu['default_threads']} thread(s) by default")
    for kind, verdict in cpu["int8_models"].items():
        click.echo(f"  INT8 model for --cpu {kind}: {verdict}")
    table = Table(title="backends", title_justify="left")
    for col in ("backend", "version", "runs here", "devices / why not"):
        table.add_column(col)
    for name, b in facts["backends"].items():
        detail = b["problem"] or ", ".join(b.get("devices", [])) or "-"
        if name == "openvino" and isinstance(b.get("cpu_precisions"), list):
            detail += f"; CPU precisions {', '.join(b['cpu_precisions'])} (default {b.get('cpu_default_precision')}, " \
                      "edgetl sets f32 unless --precision-hint)"
        if name == "tensorrt" and b.get("dla_cores") is not None:
            detail += f"; DLA cores: {b['dla_cores']}"
        table.add_row(name, b["version"] or "-", _yes(b["runs"]), escape(detail))
    print_table(table, results_console())
    if gpu.get("found"):
        click.echo(f"GPU: {gpu['gpu']} (compute capability {gpu['compute_capability']}) through {gpu['via']}; "
                   f"driver CUDA {gpu['driver_cuda']}, runtime CUDA {gpu['runtime_cuda']}, "
                   f"{'compatible' if gpu['compatible'] else 'NOT compatible'}")
    if gpu.get("passed_over"):
        click.echo(f"GPU: passed over: {gpu['passed_over']}")
    if gpu.get("problem"):
        click.echo(f"GPU: {gpu['problem']}")
    if gpu.get("runtimes") and not gpu.get("found"):
        click.echo(f"GPU: CUDA runtimes found: {', '.join(gpu['runtimes'])}")


COMMANDS = [doctor_cmd]
