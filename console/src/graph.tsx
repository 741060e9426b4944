// A plan drawn as a graph, laid out by dagre: a box per node (its name and applet
// name@version), an arrow per wired exit labelled with the exit, the error exit dashed and
// red, and every declared exit left unwired drawn to an "ends the run" mark. A run's path is
// drawn over it: the nodes it visited, the exits it took, where it is now or failed.
import { Graph as DagreGraph, layout } from "@dagrejs/dagre";
import { useLayoutEffect, useMemo } from "preact/hooks";
import type { AppletVersion, PlanBody } from "./api/model";

export interface RunPath {
  /// How many times the run stepped on each node.
  visits: Map<string, number>;
  /// Exits taken, as edgeKey(from, exit).
  taken: Set<string>;
  /// Where the run is now (not finished) or where it failed.
  current: string | null;
  failed: string | null;
}

export const edgeKey = (from: string, exit: string) => `${from}\u0000${exit}`;

/// A mark on a node beyond the run's path: a problem the editor pinned to it, or what a
/// version diff says of it. `kind` styles it (class `mark-KIND`) and `badge` is drawn in its
/// corner, so the mark is not told by colour alone; `note` is added to its spoken label.
export interface NodeMark {
  kind: string;
  badge: string;
  note: string;
}

interface LaidNode {
  id: string;
  kind: "node" | "end";
  x: number;
  y: number;
  width: number;
  height: number;
  title: string;
  subtitle: string;
}

interface LaidEdge {
  key: string;
  from: string;
  exit: string;
  kind: "exit" | "error" | "end";
  points: { x: number; y: number }[];
  label: { x: number; y: number };
}

const CHAR = 7.4; // px per character of the 12px UI font, for sizing boxes before drawing
const LABEL_CHAR = 6.6;

export function layoutPlan(
  plan: PlanBody,
  applets: Map<string, AppletVersion>,
): { nodes: LaidNode[]; edges: LaidEdge[]; width: number; height: number } {
  const g = new DagreGraph({ multigraph: true });
  g.setGraph({ rankdir: "TB", nodesep: 28, ranksep: 54, edgesep: 14, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  const edges: Omit<LaidEdge, "points" | "label">[] = [];
  for (const [id, node] of Object.entries(plan.nodes)) {
    const width = Math.max(120, Math.max(id.length, node.applet.length) * CHAR + 28);
    g.setNode(id, { width, height: 46 });
    const wired = new Set<string>();
    for (const [exit, target] of Object.entries(node.exits ?? {})) {
      wired.add(exit);
      if (plan.nodes[target]) edges.push({ key: edgeKey(id, exit), from: id, exit, kind: "exit" });
    }
    if (node.error && plan.nodes[node.error]) {
      edges.push({ key: edgeKey(id, "error"), from: id, exit: "error", kind: "error" });
    }
    // Declared exits with no wire end the run: one mark per node keeps the drawing calm.
    const declared = applets.get(node.applet)?.exits ?? ["next"];
    const open = declared.filter((e) => e !== "*" && !wired.has(e));
    if (open.length) {
      const end = `\u0000end:${id}`;
      g.setNode(end, { width: 92, height: 22 });
      for (const exit of open) {
        edges.push({ key: edgeKey(id, exit), from: id, exit, kind: "end" });
      }
    }
  }
  const target = (e: Omit<LaidEdge, "points" | "label">): string => {
    const node = plan.nodes[e.from]!;
    if (e.kind === "end") return `\u0000end:${e.from}`;
    if (e.kind === "error") return node.error!;
    return node.exits![e.exit]!;
  };
  // A node many error exits lead to (a shared failure handler) gets them along a lane at
  // the left instead of through the layout: each long edge would become a chain of dummy
  // nodes, one per rank it crosses, and they are what makes a layered layout slow (and
  // such a bundle is easier to read as one lane). One of them stays in the layout, so the
  // handler is placed after its sources.
  const errorSources = new Map<string, string[]>();
  for (const e of edges) {
    if (e.kind === "error") errorSources.set(target(e), [...(errorSources.get(target(e)) ?? []), e.key]);
  }
  const laned = new Map<string, number>(); // edge key → lane index
  let lanes = 0;
  for (const keys of errorSources.values()) {
    if (keys.length < LANE_FROM) continue;
    for (const key of keys.slice(0, -1)) laned.set(key, lanes);
    lanes += 1;
  }
  for (const e of edges) {
    if (laned.has(e.key)) continue;
    g.setEdge(
      e.from,
      target(e),
      { width: e.exit.length * LABEL_CHAR + 8, height: 14, labelpos: "c" },
      e.key,
    );
  }
  layout(g);
  const shift = lanes ? LANE_MARGIN + lanes * LANE_GAP : 0;
  const nodes: LaidNode[] = g.nodes().map((id) => {
    const n = g.node(id) as { x: number; y: number; width: number; height: number };
    const isEnd = id.startsWith("\u0000end:");
    const planNode = plan.nodes[id];
    return {
      id,
      kind: isEnd ? "end" : "node",
      x: n.x + shift,
      y: n.y,
      width: n.width,
      height: n.height,
      title: isEnd ? "ends the run" : id,
      subtitle: planNode?.applet ?? "",
    };
  });
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const laidEdges: LaidEdge[] = edges.map((e) => {
    const lane = laned.get(e.key);
    if (lane !== undefined) return { ...e, ...laneRoute(byId.get(e.from)!, byId.get(target(e))!, lane) };
    const l = g.edge(e.from, target(e), e.key) as {
      points: { x: number; y: number }[];
      x: number;
      y: number;
    };
    return {
      ...e,
      points: l.points.map((p) => ({ x: p.x + shift, y: p.y })),
      label: { x: l.x + shift, y: l.y },
    };
  });
  const size = g.graph() as { width?: number; height?: number };
  return { nodes, edges: laidEdges, width: (size.width ?? 0) + shift, height: size.height ?? 0 };
}

const LANE_FROM = 3; // error exits to one node before they go by a lane
const LANE_MARGIN = 14;
const LANE_GAP = 10;

/// From the source's bottom into the gap below its rank, left to the lane, along it to the
/// gap above the target's rank, and down into the target: the turns are in the gaps between
/// ranks, where no node is.
function laneRoute(from: LaidNode, to: LaidNode, lane: number) {
  const laneX = LANE_MARGIN / 2 + lane * LANE_GAP;
  const startX = from.x - from.width / 4;
  const below = from.y + from.height / 2;
  const endX = to.x - to.width / 4;
  const above = to.y - to.height / 2;
  const points = [
    { x: startX, y: below },
    { x: startX, y: below + 12 },
    { x: laneX, y: below + 12 },
    { x: laneX, y: above - 12 },
    { x: endX, y: above - 12 },
    { x: endX, y: above },
  ];
  return { points, label: { x: startX - 18, y: below + 8 } };
}

function pathData(points: { x: number; y: number }[]): string {
  return points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
}

export function PlanGraph(props: {
  plan: PlanBody;
  applets: Map<string, AppletVersion>;
  path?: RunPath;
  selected?: string | null;
  onSelect?: (node: string) => void;
  marks?: Map<string, NodeMark>;
  /// Legend entries for the marks drawn: the kind (its key's style) and what it means.
  markLegend?: { kind: string; badge: string; label: string }[];
}) {
  const { plan, applets, path } = props;
  const laid = useMemo(() => {
    performance.mark("coda:graph-start");
    return layoutPlan(plan, applets);
  }, [plan, applets]);
  useLayoutEffect(() => {
    // Layout and the DOM commit, for BENCHMARKS.md (read by the browser tests).
    performance.measure("coda:graph-draw", "coda:graph-start");
  }, [laid]);

  const described = `Plan ${plan.name}: ${Object.keys(plan.nodes).length} nodes, starting at ${plan.start}`;
  return (
    <figure class="graph-figure">
      <div class="graph" role="group" aria-label={described}>
        <svg
          viewBox={`0 0 ${laid.width} ${laid.height}`}
          width={laid.width}
          height={laid.height}
        >
          <defs>
            <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto-start-reverse">
              <path d="M0,0 L10,5 L0,10 z" class="arrowhead" />
            </marker>
            <marker id="arrow-error" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto-start-reverse">
              <path d="M0,0 L10,5 L0,10 z" class="arrowhead error" />
            </marker>
            <marker id="arrow-taken" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" orient="auto-start-reverse">
              <path d="M0,0 L10,5 L0,10 z" class="arrowhead taken" />
            </marker>
          </defs>
          {laid.edges.map((e) => {
            const taken = path?.taken.has(e.key) ?? false;
            const cls = `edge ${e.kind}${taken ? " taken" : ""}`;
            return (
              <g class={cls} key={e.key} data-edge={`${e.from}:${e.exit}`}>
                <path
                  d={pathData(e.points)}
                  marker-end={`url(#${taken ? "arrow-taken" : e.kind === "error" ? "arrow-error" : "arrow"})`}
                />
                <text x={e.label.x} y={e.label.y + 4} text-anchor="middle" class="edge-label">
                  {e.exit}
                </text>
              </g>
            );
          })}
          {laid.nodes.map((n) => {
            const x = n.x - n.width / 2;
            const y = n.y - n.height / 2;
            if (n.kind === "end") {
              return (
                <g class="end-mark" key={n.id}>
                  <rect x={x} y={y} width={n.width} height={n.height} rx={11} />
                  <text x={n.x} y={n.y + 4} text-anchor="middle">
                    {n.title}
                  </text>
                </g>
              );
            }
            const visits = path?.visits.get(n.id) ?? 0;
            const mark = props.marks?.get(n.id);
            const cls = [
              "node",
              n.id === plan.start ? "start" : "",
              visits ? "visited" : "",
              path?.current === n.id ? "current" : "",
              path?.failed === n.id ? "failed" : "",
              props.selected === n.id ? "selected" : "",
              mark ? `mark-${mark.kind}` : "",
            ]
              .filter(Boolean)
              .join(" ");
            const label = `Node ${n.id}, applet ${n.subtitle}${n.id === plan.start ? ", the start" : ""}${
              visits ? `, visited ${visits} time${visits > 1 ? "s" : ""}` : ""
            }${path?.current === n.id ? ", the run is here" : ""}${path?.failed === n.id ? ", the run failed here" : ""}${
              mark ? `, ${mark.note}` : ""
            }`;
            const select = () => props.onSelect?.(n.id);
            return (
              <g
                class={cls}
                key={n.id}
                data-node={n.id}
                tabindex={props.onSelect ? 0 : undefined}
                role={props.onSelect ? "button" : "img"}
                aria-label={label}
                aria-pressed={props.onSelect ? props.selected === n.id : undefined}
                onClick={select}
                onKeyDown={(ev) => {
                  if (ev.key === "Enter" || ev.key === " ") {
                    ev.preventDefault();
                    select();
                  }
                }}
              >
                <title>{label}</title>
                <rect x={x} y={y} width={n.width} height={n.height} rx={6} />
                <text x={n.x} y={y + 19} text-anchor="middle" class="node-name">
                  {n.title}
                </text>
                <text x={n.x} y={y + 36} text-anchor="middle" class="node-applet">
                  {n.subtitle}
                </text>
                {mark ? (
                  <text x={x + 6} y={y + 12} class="mark-badge" aria-hidden="true">
                    {mark.badge}
                  </text>
                ) : null}
                {visits > 1 ? (
                  <text x={x + n.width - 6} y={y + 12} text-anchor="end" class="visits">
                    ×{visits}
                  </text>
                ) : null}
              </g>
            );
          })}
        </svg>
      </div>
      <ul class="legend" aria-label="Legend">
        <li><span class="key key-exit" aria-hidden="true" />exit</li>
        <li><span class="key key-error" aria-hidden="true" />error exit</li>
        <li><span class="key key-end" aria-hidden="true" />unwired exit: ends the run</li>
        {path ? <li><span class="key key-taken" aria-hidden="true" />the run's path</li> : null}
        {props.markLegend?.map((m) => (
          <li key={m.kind}>
            <span class={`key key-mark mark-${m.kind}`} aria-hidden="true">{m.badge}</span>
            {m.label}
          </li>
        ))}
      </ul>
    </figure>
  );
}
