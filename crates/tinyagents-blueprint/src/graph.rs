//! Small graph algorithms shared by the passes: strongly connected
//! components and topological levels, both iterative (no recursion on
//! large graphs).

/// Strongly connected components of the graph with `n` nodes and
/// adjacency lists `succ` (Tarjan's algorithm, iterative). Components come
/// out in reverse topological order.
pub fn sccs(n: usize, succ: &[Vec<usize>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut out = Vec::new();
    let mut next = 0usize;
    let mut work: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index.get(root) != Some(&UNSEEN) {
            continue;
        }
        work.push((root, 0));
        while let Some((v, i)) = work.pop() {
            if i == 0 {
                index[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            let edges = succ.get(v).map_or(&[][..], Vec::as_slice);
            if let Some(&w) = edges.get(i) {
                work.push((v, i + 1));
                if index[w] == UNSEEN {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                comp.sort_unstable();
                out.push(comp);
            }
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
        }
    }
    out
}

/// Topological levels of the DAG with `n` nodes and predecessor lists
/// `pred`: level 0 has no predecessors, level k nodes depend only on levels
/// below k. `None` when the graph has a cycle.
pub fn levels(n: usize, pred: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indeg = vec![0usize; n];
    for (v, ps) in pred.iter().enumerate() {
        for &p in ps {
            if let Some(s) = succ.get_mut(p) {
                s.push(v);
                indeg[v] += 1;
            }
        }
    }
    let mut level = vec![0usize; n];
    let mut queue: Vec<usize> = (0..n).filter(|&v| indeg[v] == 0).collect();
    let mut seen = 0;
    while let Some(v) = queue.pop() {
        seen += 1;
        for &w in &succ[v] {
            level[w] = level[w].max(level[v] + 1);
            indeg[w] -= 1;
            if indeg[w] == 0 {
                queue.push(w);
            }
        }
    }
    (seen == n).then_some(level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cycles_and_singletons() {
        // 0 -> 1 -> 2 -> 0, 2 -> 3
        let succ = vec![vec![1], vec![2], vec![0, 3], vec![]];
        let mut c = sccs(4, &succ);
        c.sort();
        assert_eq!(c, vec![vec![0, 1, 2], vec![3]]);
    }

    #[test]
    fn a_long_chain_does_not_recurse() {
        let n = 200_000;
        let succ: Vec<Vec<usize>> = (0..n).map(|i| if i + 1 < n { vec![i + 1] } else { vec![] }).collect();
        assert_eq!(sccs(n, &succ).len(), n);
    }

    #[test]
    fn levels_group_independent_nodes() {
        // 0, 1 independent; 2 needs both; 3 needs 2
        let pred = vec![vec![], vec![], vec![0, 1], vec![2]];
        assert_eq!(levels(4, &pred), Some(vec![0, 0, 1, 2]));
        assert_eq!(levels(2, &[vec![1], vec![0]]), None);
    }
}
