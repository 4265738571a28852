"""Pictures of a network: Mermaid text (paste into any Markdown viewer) and a PNG."""

from __future__ import annotations

from pathlib import Path

from llmnet.network.graph import Network

_SHAPES = {"generator": ("[", "]"), "vote": ("([", "])"), "filter_vote": ("([", "])"), "judge": ("[[", "]]"),
           "filter": ("[[", "]]"), "select": ("([", "])"), "gate": ("{", "}"), "refine": ("[", "]"),
           "rank": ("[[", "]]"), "tournament": ("([", "])")}


def _label(name: str, node) -> str:
    detail = node.kind
    if node.kind == "generator":
        detail = f"generator x{node.samples} · {node.model}"
    elif node.kind == "refine":
        detail = f"refine x{node.rounds} rounds · {node.model}"
    elif hasattr(node, "model"):
        detail = f"{node.kind} · {node.model}"
    elif node.kind == "gate":
        detail = f"gate · {node.router.kind} router"
    return f'"{name}<br/><small>{detail}</small>"'


def _ident(name: str) -> str:
    return name.replace("/", "__").replace("-", "_")


def mermaid(network: Network) -> str:
    """A Mermaid ``flowchart`` of the network; each gate branch is drawn as a subgraph box."""
    lines = ["flowchart TD"]

    def emit(net: Network, prefix: str, indent: str) -> None:
        for name in net.order:
            node = net.spec.nodes[name]
            left, right = _SHAPES.get(node.kind, ("[", "]"))  # registered kinds: a plain box
            lines.append(f"{indent}{_ident(prefix + name)}{left}{_label(name, node)}{right}")
        for a, b in net.graph.edges:
            lines.append(f"{indent}{_ident(prefix + a)} --> {_ident(prefix + b)}")
        for gate, branches in net.branches.items():
            for branch, sub in branches.items():
                box = _ident(f"{prefix}{gate}/{branch}")
                lines.append(f'{indent}subgraph {box}["{gate}: {branch}"]')
                emit(sub, f"{prefix}{gate}/{branch}/", indent + "  ")
                lines.append(f"{indent}end")
                lines.append(f"{indent}{_ident(prefix + gate)} -.->|{branch}| {_ident(prefix + gate + '/' + branch + '/' + sub.output)}")

    emit(network, "", "  ")
    lines.append(f"  {_ident(network.output)} --> OUT((output))")
    return "\n".join(lines) + "\n"


def draw_png(network: Network, path: str | Path) -> Path:
    """Draw the network (branches included) as a layered PNG with matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    g = nx.DiGraph()
    kinds: dict[str, str] = {}
    for qual, node in network.walk():
        g.add_node(qual)
        kinds[qual] = node.kind
        prefix = qual.rsplit("/", 1)[0] + "/" if "/" in qual else ""
        for inp in getattr(node, "inputs", []) or []:
            g.add_edge(prefix + inp, qual)

    def link(net: Network, prefix: str) -> None:
        for gate, branches in net.branches.items():
            for branch, sub in branches.items():
                g.add_edge(f"{prefix}{gate}/{branch}/{sub.output}", prefix + gate)
                link(sub, f"{prefix}{gate}/{branch}/")

    link(network, "")
    for layer, nodes in enumerate(nx.topological_generations(g)):
        for n in nodes:
            g.nodes[n]["layer"] = layer
    pos = nx.multipartite_layout(g, subset_key="layer", align="horizontal", scale=2)
    pos = {n: (x, -y) for n, (x, y) in pos.items()}
    colours = {"generator": "#8ecae6", "vote": "#ffb703", "filter_vote": "#ffb703", "judge": "#bde0fe",
               "filter": "#bde0fe", "select": "#ffd6a5", "gate": "#e76f51", "refine": "#8ecae6", "rank": "#bde0fe",
               "tournament": "#ffd6a5"}
    width = max(6.0, 1.6 * max(len(l) for l in nx.topological_generations(g)))
    fig, ax = plt.subplots(figsize=(width, 1.4 * (max(g.nodes[n]["layer"] for n in g) + 2)))
    nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, arrowstyle="-|>", arrowsize=14, node_size=2200)
    nx.draw_networkx_nodes(g, pos, ax=ax, node_size=2200, node_color=[colours.get(kinds[n], "#dddddd") for n in g])
    nx.draw_networkx_labels(g, pos, ax=ax, font_size=7,
                            labels={n: n.replace("/", "/\n") + f"\n({kinds[n]})" for n in g})
    ax.set_title(f"{network.name}  (output: {network.output})")
    ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
