import { describe, expect, it } from 'vitest';
import { CycleError, Graph } from '../../../../src/engine/plan/graph.js';

describe('Graph', () => {
  it('sorts each node after its predecessors; of the nodes ready, the first inserted goes first', () => {
    const g = new Graph().addNode('x').addNode('vm').addEdge('disk', 'vm').addEdge('net', 'vm').addNode('y');
    // vm (inserted second) waits for disk and net, then goes before y (inserted last)
    expect(g.topoSort()).toEqual(['x', 'disk', 'net', 'vm', 'y']);
    expect(g.reverseTopoSort()).toEqual(['y', 'vm', 'net', 'disk', 'x']);
    expect(g.predecessors('vm')).toEqual(['disk', 'net']);
    expect(g.successors('disk')).toEqual(['vm']);
  });

  it('reports a cycle as the path that closes it', () => {
    const g = new Graph().addEdge('a', 'b').addEdge('b', 'c').addEdge('c', 'a').addEdge('c', 'd');
    expect(g.findCycle()).toEqual(['a', 'b', 'c', 'a']);
    expect(() => g.topoSort()).toThrow(CycleError);
    expect(() => g.topoSort()).toThrow('cycle: a -> b -> c -> a');
  });

  it('finds a self-loop and no cycle in a diamond', () => {
    expect(new Graph().addEdge('a', 'a').findCycle()).toEqual(['a', 'a']);
    const diamond = new Graph().addEdge('a', 'b').addEdge('a', 'c').addEdge('b', 'd').addEdge('c', 'd');
    expect(diamond.findCycle()).toBeUndefined();
    expect(diamond.topoSort()).toEqual(['a', 'b', 'c', 'd']);
  });
});
