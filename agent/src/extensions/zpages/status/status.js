// oxcol status page: polls the JSON at <body data-api> every 2 s and draws it.
// Every text from the server goes into the DOM as text (textContent / text nodes), never
// as markup. No library, no external request.
(function () {
  'use strict';
  var API = document.body.getAttribute('data-api') || '/api/status';
  var POLL_MS = 2000;
  var SVG_NS = 'http://www.w3.org/2000/svg';
  var app = document.getElementById('app');
  var lastOk = 0;

  // ---- DOM helpers -------------------------------------------------------------------
  function add(node, children) {
    for (var i = 0; i < children.length; i++) {
      var c = children[i];
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) { add(node, c); continue; }
      node.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      if (attrs[k] !== null && attrs[k] !== undefined) node.setAttribute(k, String(attrs[k]));
    });
  }
  function el(tag, attrs) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    return add(node, Array.prototype.slice.call(arguments, 2));
  }
  function svg(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    return add(node, Array.prototype.slice.call(arguments, 2));
  }

  // ---- formatting --------------------------------------------------------------------
  function bytes(v) {
    if (v === null || v === undefined || !isFinite(v)) return '-';
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0, x = Math.abs(v);
    while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
    return (v < 0 ? '-' : '') + (i === 0 ? x.toFixed(0) : x.toFixed(x < 10 ? 2 : 1)) + ' ' + units[i];
  }
  function num(v) {
    if (v === null || v === undefined || !isFinite(v)) return '-';
    var a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(2) + 'G';
    if (a >= 1e6) return (v / 1e6).toFixed(2) + 'M';
    if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
    return Number.isInteger(v) ? String(v) : v.toFixed(a < 10 ? 2 : 1);
  }
  function rate(v) { return v === null || v === undefined ? '' : num(v) + '/s'; }
  function pct(v) { return v === null || v === undefined ? '-' : (v * 100).toFixed(v < 0.1 ? 1 : 0) + '%'; }
  function duration(s) {
    if (s === null || s === undefined || !isFinite(s)) return '-';
    s = Math.max(0, Math.round(s));
    var d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60, sec = s % 60;
    if (d) return d + 'd' + h + 'h';
    if (h) return h + 'h' + (m < 10 ? '0' : '') + m + 'm';
    if (m) return m + 'm' + (sec < 10 ? '0' : '') + sec + 's';
    return sec + 's';
  }
  function perMinute(bytesPerSecond) {
    var v = bytesPerSecond * 60;
    return (v >= 0 ? '+' : '') + bytes(v) + '/min';
  }

  // ---- sparklines --------------------------------------------------------------------
  // values: numbers or nulls (gaps), oldest first.
  function spark(values, opts) {
    opts = opts || {};
    var w = opts.width || 120, h = opts.height || 26, pad = 2;
    var box = svg('svg', { 'class': 'spark', width: w, height: h, viewBox: '0 0 ' + w + ' ' + h, role: 'img' });
    var finite = values.filter(function (v) { return v !== null && v !== undefined && isFinite(v); });
    if (finite.length < 2) {
      add(box, [svg('text', { x: 2, y: h - 8, 'font-size': 10, fill: '#98a2b3' }, 'collecting…')]);
      return box;
    }
    var lo = Math.min.apply(null, finite), hi = Math.max.apply(null, finite);
    if (opts.floor !== undefined) lo = Math.min(lo, opts.floor);
    if (opts.ceiling !== undefined && opts.ceiling !== null) hi = Math.max(hi, opts.ceiling);
    if (hi === lo) { hi = lo + 1; }
    var n = values.length, segments = [], current = [];
    values.forEach(function (v, i) {
      if (v === null || v === undefined || !isFinite(v)) {
        if (current.length) segments.push(current);
        current = [];
        return;
      }
      var x = pad + (n === 1 ? 0 : i * (w - 2 * pad) / (n - 1));
      var y = h - pad - (v - lo) * (h - 2 * pad) / (hi - lo);
      current.push(x.toFixed(1) + ',' + y.toFixed(1));
    });
    if (current.length) segments.push(current);
    if (opts.ceiling !== undefined && opts.ceiling !== null) {
      var yl = h - pad - (opts.ceiling - lo) * (h - 2 * pad) / (hi - lo);
      add(box, [svg('line', { x1: 0, x2: w, y1: yl, y2: yl, stroke: '#d92d20', 'stroke-dasharray': '3 2', 'stroke-width': 1 })]);
    }
    segments.forEach(function (points) {
      var line = svg('polyline', { points: points.join(' ') });
      if (opts.color) line.style.stroke = opts.color;
      add(box, [line]);
    });
    add(box, [svg('title', null, opts.title || ('min ' + num(lo) + ', max ' + num(hi)))]);
    return box;
  }
  function historyValues(samples) { return (samples || []).map(function (s) { return s.v; }); }

  // ---- header ------------------------------------------------------------------------
  function header(status) {
    var p = status.process || {};
    var live = el('span', { 'class': 'live', id: 'live' });
    return el('header', { 'class': 'top' },
      el('h1', null, 'oxcol'),
      el('span', null, live, el('span', { id: 'updated' }, 'live, every 2 s')),
      el('span', null, 'version ', el('code', null, status.version || '?')),
      el('span', null, 'up ', el('b', { id: 'uptime' }, duration(status.uptime_seconds))),
      el('span', null, 'oxcol RSS ', el('b', { id: 'rss' }, bytes(p.resident_bytes)), ' ',
        spark(p.resident_spark || [], { width: 90, height: 20, title: 'oxcol RSS, last 15 min' })));
  }

  // ---- memory picture ----------------------------------------------------------------
  function fill(used, limit) {
    var ratio = limit ? Math.min(1, used / limit) : 0;
    var cls = ratio >= 0.9 ? 'bar full' : ratio >= 0.75 ? 'bar high' : 'bar';
    var inner = el('div');
    inner.style.width = (ratio * 100).toFixed(1) + '%';
    return el('div', { 'class': cls, title: limit ? pct(used / limit) + ' of the limit' : 'no limit' }, inner);
  }
  function ttl(seconds, trend, limit) {
    if (seconds !== null && seconds !== undefined) {
      return el('span', { 'class': seconds < 3600 ? 'ttl soon' : 'ttl', 'data-ttl-seconds': Math.round(seconds) },
        'time to limit ' + duration(seconds));
    }
    if (trend && trend.bytes_per_second > 0) {
      return el('span', { 'class': 'ttl' }, limit ? 'growing, limit more than 24h away' : 'growing, no limit to reach');
    }
    return el('span', { 'class': 'ttl quiet' }, trend ? 'stable' : 'trend after 5 samples');
  }
  function pressureText(list) {
    var memory = (list || []).filter(function (p) { return p.resource === 'memory'; })[0];
    var parts = (list || []).map(function (p) {
      return p.resource + ' some ' + pct(p.some_avg10) + ' / ' + pct(p.some_avg60) +
        (p.full_avg10 !== null && p.full_avg10 !== undefined ? ', full ' + pct(p.full_avg10) + ' / ' + pct(p.full_avg60) : '');
    });
    var text = parts.length ? parts.join('; ') : 'not reported';
    var hot = memory && ((memory.some_avg10 || 0) > 0.1 || (memory.full_avg10 || 0) > 0.05);
    return el('span', { 'class': hot ? 'bad' : null, title: 'avg10 / avg60' }, text);
  }
  function cgroupCard(c) {
    var trend = c.trend;
    var name = c.path === '/' ? '/ (root)' : c.path;
    var pod = c.resource && (c.resource['k8s.pod.name'] || c.resource['container.name'] || c.resource['service.name']);
    return el('div', { 'class': 'card cgroup', 'data-cgroup': c.path },
      el('h3', null, name, pod ? el('span', { 'class': 'muted' }, ' (' + pod + ')') : null),
      c.working_set_bytes === null || c.working_set_bytes === undefined
        ? el('div', { 'class': 'muted' }, 'working set not reported')
        : el('div', null, el('b', { 'class': 'ws' }, bytes(c.working_set_bytes)), ' of ',
          el('b', null, c.limit_bytes === null || c.limit_bytes === undefined ? 'no limit' : bytes(c.limit_bytes)),
          c.limit_bytes ? el('span', { 'class': 'muted' }, ' (' + pct(c.working_set_bytes / c.limit_bytes) + ')') : null),
      fill(c.working_set_bytes || 0, c.limit_bytes),
      el('dl', { 'class': 'kv' },
        el('dt', null, 'trend'), el('dd', null, trend ? perMinute(trend.bytes_per_second) +
          (trend.source === 'ewma_processor' ? ' (ewma)' : '') : '-'),
        el('dt', null, 'forecast'), el('dd', null, ttl(c.time_to_limit_seconds, trend, c.limit_bytes)),
        el('dt', null, 'pressure'), el('dd', null, pressureText(c.pressure)),
        c.oom_kills ? el('dt', null, 'OOM kills') : null, c.oom_kills ? el('dd', { 'class': 'bad' }, num(c.oom_kills)) : null,
        el('dt', null, '15 min'), el('dd', null, spark(historyValues(c.working_set_history),
          { width: 200, height: 30, ceiling: c.limit_bytes, title: 'working set, last 15 min (dashed: the limit)' }))));
  }
  function machineCard(m) {
    return el('div', { 'class': 'card machine' },
      el('h3', null, 'machine ' + (m.host || '')),
      el('div', null, el('b', null, bytes(m.used_bytes)), ' used of ', el('b', null, bytes(m.total_bytes))),
      fill(m.used_bytes || 0, m.total_bytes),
      el('dl', { 'class': 'kv' },
        el('dt', null, 'trend'), el('dd', null, m.trend ? perMinute(m.trend.bytes_per_second) : '-'),
        el('dt', null, 'forecast'), el('dd', null, ttl(m.time_to_limit_seconds, m.trend, m.total_bytes)),
        el('dt', null, '15 min'), el('dd', null, spark(historyValues(m.used_history), { width: 200, height: 30, ceiling: m.total_bytes, title: 'memory used, last 15 min (dashed: total)' }))));
  }
  function memorySection(picture) {
    var cards = (picture.cgroups || []).map(cgroupCard).concat((picture.machines || []).map(machineCard));
    return el('section', { id: 'memory' },
      el('h2', null, 'Memory: working set vs limit'),
      cards.length ? el('div', { 'class': 'grid' }, cards)
        : el('p', { 'class': 'empty' }, 'No cgroup or machine memory has flowed through oxcol yet (cgroup receiver, hostmetrics memory scraper).'));
  }
  function processesSection(picture) {
    var list = picture.processes || [];
    var body = list.length ? el('table', null,
      el('tr', null, el('th', null, 'PID'), el('th', null, 'process'), el('th', null, 'owner'),
        el('th', null, 'PSS'), el('th', null, 'RSS'), el('th', null, 'swap'), el('th', null, '15 min')),
      list.slice(0, 10).map(function (p) {
        return el('tr', { 'class': 'process', 'data-pid': p.pid },
          el('td', { 'class': 'n' }, p.pid), el('td', null, el('code', null, p.name)), el('td', null, p.owner || ''),
          el('td', { 'class': 'n' }, bytes(p.pss_bytes)), el('td', { 'class': 'n' }, bytes(p.rss_bytes)),
          el('td', { 'class': 'n' }, bytes(p.swap_bytes)),
          el('td', null, spark(historyValues(p.pss_history), { floor: 0 })));
      }))
      : el('p', { 'class': 'empty' }, 'No process memory yet (smaps receiver).');
    return el('section', { id: 'processes' }, el('h2', null, 'Top processes by PSS'), body);
  }
  function suspectsSection(picture) {
    var list = picture.leak_suspects || [];
    var body = list.length ? list.map(function (s) {
      var key = 'stack-' + s.target + '-' + s.stack_id;
      var details = s.stack ? el('details', { 'data-key': key }, el('summary', null, 'stack'), el('pre', null, s.stack)) : null;
      return el('div', { 'class': 'card suspect', 'data-function': s.function },
        el('h3', null, s.function || '?'),
        el('dl', { 'class': 'kv' },
          el('dt', null, 'service'), el('dd', null, s.target || '-'),
          el('dt', null, 'created by'), el('dd', null, el('code', null, s.creator || '-')),
          el('dt', null, 'growth'), el('dd', { 'class': 'bad' }, '+' + num(s.growth_per_second) + ' goroutines/s'),
          el('dt', null, 'goroutines'), el('dd', null, num(s.goroutines), ' ',
            spark(historyValues(s.goroutines_history), { color: '#d92d20', floor: 0 }))),
        details);
    }) : el('p', { 'class': 'empty' }, 'No goroutine-leak suspect (pprof receiver with leak_detection).');
    return el('section', { id: 'leaks' }, el('h2', null, 'Goroutine-leak suspects'),
      list.length ? el('div', { 'class': 'grid' }, body) : body);
  }
  function slosSection(picture) {
    var list = picture.slos || [];
    var body = list.length ? el('table', null,
      el('tr', null, el('th', null, 'SLO'), el('th', null, 'group'), el('th', null, 'burn rates'),
        el('th', null, 'budget left'), el('th', null, 'alerts'), el('th', null, '15 min')),
      list.map(function (s) {
        var group = Object.keys(s.group || {}).map(function (k) { return k + '=' + s.group[k]; }).join(', ');
        var alerts = (s.alerts || []).map(function (a) {
          return el('span', { 'class': a.firing ? 'firing' : 'quiet', 'data-severity': a.severity }, a.severity + (a.firing ? ' FIRING' : ' ok'), ' ');
        });
        return el('tr', { 'class': 'slo', 'data-slo': s.name },
          el('td', null, el('code', null, s.name)), el('td', null, group || '-'),
          el('td', { 'class': 'mono' }, (s.burn_rates || []).map(function (b) { return b.window + ' ' + num(b.rate); }).join('  ')),
          el('td', { 'class': (s.error_budget_remaining || 0) < 0 ? 'n bad' : 'n' }, pct(s.error_budget_remaining)),
          el('td', null, alerts.length ? alerts : '-'),
          el('td', null, spark(historyValues(s.burn_rate_history), { floor: 0 })));
      }))
      : el('p', { 'class': 'empty' }, 'No SLO burn rate yet (burnrate processor).');
    return el('section', { id: 'slos' }, el('h2', null, 'SLO burn rates'), body);
  }

  // One row per Go service with gofit findings: the inputs side by side, then each
  // finding with its fix (the wording gofit logs).
  function goFitSection(picture) {
    var list = picture.go_fit || [];
    var body;
    if (list.length) {
      body = el('table', null,
        el('tr', null, el('th', null, 'service'), el('th', null, 'GOMAXPROCS'), el('th', null, 'CPU limit'),
          el('th', null, 'GOMEMLIMIT'), el('th', null, 'memory limit'), el('th', null, 'GC / throttled'),
          el('th', null, 'findings and fix')),
        list.map(function (s) {
          var findings = s.findings || [];
          var has = function (prefix) { return findings.some(function (f) { return f.finding.indexOf(prefix) === 0; }); };
          var name = s.service ? s.service + (s.instance ? '/' + s.instance : '') : (s.instance || '(unnamed)');
          var gomemlimit = s.gomemlimit !== null && s.gomemlimit !== undefined ? bytes(s.gomemlimit)
            : has('gomemlimit_unset') ? 'unset' : '-';
          var shares = [s.gc_cpu_share !== null && s.gc_cpu_share !== undefined ? 'GC ' + pct(s.gc_cpu_share) : null,
            s.cpu_throttled_share !== null && s.cpu_throttled_share !== undefined ? 'throttled ' + pct(s.cpu_throttled_share) : null]
            .filter(function (x) { return x; }).join(', ');
          return el('tr', { 'class': 'gofit', 'data-service': name },
            el('td', null, el('code', null, name), s.pod ? el('div', { 'class': 'muted' }, 'pod ' + s.pod) : null),
            el('td', { 'class': has('gomaxprocs') ? 'n bad' : 'n' }, num(s.gomaxprocs)),
            el('td', { 'class': 'n' }, s.cpu_limit !== null && s.cpu_limit !== undefined ? num(s.cpu_limit) + ' CPU' : '-'),
            el('td', { 'class': has('gomemlimit') ? 'n bad' : 'n' }, gomemlimit),
            el('td', { 'class': 'n' }, bytes(s.memory_limit)),
            el('td', { 'class': 'n' }, shares || '-'),
            el('td', null, findings.map(function (f) {
              return el('div', { 'class': 'finding', 'data-finding': f.finding },
                el('code', { 'class': 'bad' }, f.finding), f.fix ? ': ' + f.fix : '');
            })));
        }));
    } else {
      body = el('p', { 'class': 'empty' }, picture.go_fit_checked_unix_ms
        ? 'Every Go service the gofit processor checked fits its container.'
        : 'No Go runtime fit check yet (gofit processor: Go runtime metrics against the cgroup receiver\'s limits).');
    }
    return el('section', { id: 'gofit' }, el('h2', null, 'Go runtime fit'), body);
  }

  // ---- pipelines ---------------------------------------------------------------------
  function count(c, name) {
    var found = (c.counts || []).filter(function (x) { return x.name === name; })[0];
    return found || { value: null, rate: null };
  }
  function troubled(c) {
    return (c.counts || []).some(function (x) {
      return !x.gauge && x.value > 0 && /refused|failed/.test(x.name);
    }) || (c.queue_fill !== null && c.queue_fill !== undefined && c.queue_fill >= 0.8);
  }
  // One SVG: a band per pipeline, receivers left, processors in order, exporters right
  // (aligned over all pipelines); a dashed link joins a connector's two ends.
  function graph(pipelines) {
    var W = 172, H = 42, GAP_X = 46, GAP_Y = 10, BAND_PAD = 24, LEFT = 30;
    var maxProcessors = Math.max.apply(null, [0].concat(pipelines.map(function (p) { return p.processors.length; })));
    var exporterX = LEFT + (W + GAP_X) * (maxProcessors + 1);
    var width = exporterX + W + 16;
    var nodes = [], edges = [], bands = [], ends = {}, y = 4;
    pipelines.forEach(function (p) {
      var rows = Math.max(1, p.receivers.length, p.exporters.length);
      var bandH = BAND_PAD + rows * (H + GAP_Y);
      var band = { p: p, y: y, h: bandH };
      bands.push(band);
      var top = y + BAND_PAD;
      function column(list, x) {
        var offset = top + (rows - list.length) * (H + GAP_Y) / 2;
        return list.map(function (c, i) { return { c: c, x: x, y: offset + i * (H + GAP_Y), band: band }; });
      }
      var recv = column(p.receivers, LEFT);
      var procs = p.processors.map(function (c, i) {
        return { c: c, x: LEFT + (W + GAP_X) * (i + 1), y: top + (rows - 1) * (H + GAP_Y) / 2, band: band };
      });
      var exps = column(p.exporters, exporterX);
      nodes = nodes.concat(recv, procs, exps);
      var lefts = recv, chain = procs.concat([null]);
      chain.forEach(function (next) {
        var targets = next ? [next] : exps;
        lefts.forEach(function (a) { targets.forEach(function (b) { edges.push([a, b]); }); });
        lefts = next ? [next] : [];
      });
      recv.concat(exps).forEach(function (n) {
        if (n.c.kind !== 'connector') return;
        var e = ends[n.c.id] || (ends[n.c.id] = { from: [], to: [] });
        (exps.indexOf(n) >= 0 ? e.from : e.to).push(n);
      });
      y += bandH + 8;
    });
    var box = svg('svg', { 'class': 'graph', width: width, height: y, viewBox: '0 0 ' + width + ' ' + y });
    bands.forEach(function (b, i) {
      add(box, [svg('rect', { x: 0, y: b.y, width: width, height: b.h, fill: i % 2 ? '#fafbfc' : '#f3f5f8', rx: 6 }),
        svg('text', { 'class': 'band', x: LEFT, y: b.y + 16, 'data-pipeline': b.p.id }, b.p.id + ' (' + b.p.signal + ')')]);
    });
    edges.forEach(function (e) {
      var x1 = e[0].x + W, y1 = e[0].y + H / 2, x2 = e[1].x, y2 = e[1].y + H / 2, mx = (x1 + x2) / 2;
      add(box, [svg('path', { 'class': 'edge', d: 'M' + x1 + ',' + y1 + ' C' + mx + ',' + y1 + ' ' + mx + ',' + y2 + ' ' + x2 + ',' + y2 })]);
    });
    Object.keys(ends).forEach(function (id) {
      ends[id].from.forEach(function (a) {
        ends[id].to.forEach(function (b) {
          // Out of A's connector to the right, along the gap next to A's band, back to
          // the left margin, into B's connector from the left.
          var x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
          var ym = b.band.y > a.band.y ? a.band.y + a.band.h + 4 : a.band.y - 4;
          var d = 'M' + x1 + ',' + y1 + ' C' + (x1 + 14) + ',' + y1 + ' ' + (x1 + 14) + ',' + ym + ' ' + x1 + ',' + ym +
            ' L' + (LEFT - 14) + ',' + ym + ' C' + (LEFT - 26) + ',' + ym + ' ' + (LEFT - 26) + ',' + y2 + ' ' + x2 + ',' + y2;
          add(box, [svg('path', { 'class': 'link', d: d }, svg('title', null, 'connector ' + id))]);
        });
      });
    });
    var colors = { receiver: '#2f6fdf', processor: '#6b7280', exporter: '#15803d', connector: '#8b3fd6' };
    nodes.forEach(function (n) {
      var c = n.c, main = count(c, c.spark_of), label = c.id.length > 24 ? c.id.slice(0, 23) + '…' : c.id;
      var sub = c.spark_of ? c.spark_of + ' ' + num(main.value) + (main.rate !== null && main.rate !== undefined ? ' · ' + rate(main.rate) : '') : c.type;
      if (c.queue_fill !== null && c.queue_fill !== undefined) sub += ' · q ' + pct(c.queue_fill);
      add(box, [svg('g', { 'class': 'node', 'data-component': c.id, 'data-kind': c.kind },
        svg('rect', { 'class': 'node', x: n.x, y: n.y, width: W, height: H, rx: 6, stroke: troubled(c) ? '#d92d20' : colors[c.kind] }),
        svg('text', { x: n.x + 8, y: n.y + 17 }, label),
        svg('text', { 'class': 'sub', x: n.x + 8, y: n.y + 33 }, sub),
        svg('title', null, c.kind + ' ' + c.id + ' (' + c.type + ')'))]);
    });
    return box;
  }
  function componentsTable(pipelines) {
    var rows = [];
    pipelines.forEach(function (p) {
      [['receivers', p.receivers], ['processors', p.processors], ['exporters', p.exporters]].forEach(function (stage) {
        stage[1].forEach(function (c) {
          var cells = (c.counts || []).map(function (x) {
            var bad = !x.gauge && x.value > 0 && /refused|failed/.test(x.name);
            return el('span', { 'class': bad ? 'count bad' : 'count', 'data-count': x.name },
              x.name + ' ', el('b', { 'class': 'value' }, num(x.value)),
              x.rate !== null && x.rate !== undefined ? ' (' + rate(x.rate) + ')' : '', '  ');
          });
          rows.push(el('tr', { 'class': 'component', 'data-pipeline': p.id, 'data-component': c.id },
            el('td', null, el('code', null, p.id)),
            el('td', null, el('code', null, c.id)),
            el('td', null, el('span', { 'class': 'kind ' + c.kind }, c.kind)),
            el('td', null, cells, c.type === 'batch' ? el('span', { 'class': 'muted' }, ' (batching is done in the exporter queues)') : null),
            el('td', { 'class': 'n' }, c.queue_fill !== null && c.queue_fill !== undefined ? pct(c.queue_fill) : ''),
            el('td', null, c.spark_of ? spark(c.spark || [], { floor: 0, title: c.spark_of + ' per second, last 15 min' }) : null)));
        });
      });
    });
    return el('table', { id: 'components' },
      el('tr', null, el('th', null, 'pipeline'), el('th', null, 'component'), el('th', null, 'kind'),
        el('th', null, 'counts (rate)'), el('th', null, 'queue fill'), el('th', null, '15 min')), rows);
  }
  function pipelinesSection(status) {
    var pipelines = status.pipelines || [];
    if (!pipelines.length) return el('section', { id: 'pipelines' }, el('h2', null, 'Pipelines'), el('p', { 'class': 'empty' }, 'No pipeline is running.'));
    var scroll = el('div', { style: 'overflow-x:auto' }, graph(pipelines));
    return el('section', { id: 'pipelines' }, el('h2', null, 'Pipelines'), scroll,
      el('p', { 'class': 'muted' }, 'Counts are oxcol\'s self-telemetry (the numbers /metrics shows); rates over the last seconds, sparklines per ' + status.sample_interval_seconds + ' s over 15 minutes.'),
      componentsTable(pipelines));
  }

  // ---- the page ----------------------------------------------------------------------
  function render(status) {
    var open = {};
    Array.prototype.forEach.call(app.querySelectorAll('details[open]'), function (d) { open[d.getAttribute('data-key')] = true; });
    var picture = status.picture;
    var parts = [header(status)];
    if (picture) {
      parts.push(memorySection(picture), suspectsSection(picture), goFitSection(picture), slosSection(picture));
    } else {
      parts.push(el('section', null, el('p', { 'class': 'empty' }, 'The memory picture is not available in this oxcol.')));
    }
    parts.push(pipelinesSection(status));
    if (picture) {
      parts.push(processesSection(picture));
      if (picture.dropped_series) parts.push(el('p', { 'class': 'muted' }, picture.dropped_series + ' series not shown: the picture\'s tables are full.'));
    }
    var fresh = el('div');
    add(fresh, parts);
    Array.prototype.forEach.call(fresh.querySelectorAll('details'), function (d) { if (open[d.getAttribute('data-key')]) d.open = true; });
    app.replaceChildren ? app.replaceChildren(fresh) : (app.textContent = '', app.appendChild(fresh));
    app.setAttribute('data-updated', String(Date.now()));
  }
  function markStale(message) {
    var dot = document.getElementById('live'), text = document.getElementById('updated');
    if (dot) dot.className = 'live stale';
    if (text) text.textContent = message;
    if (!dot) app.textContent = message;
  }
  function poll() {
    var request = new XMLHttpRequest();
    request.open('GET', API);
    request.timeout = 5000;
    request.onload = function () {
      if (request.status !== 200) { markStale('oxcol answered ' + request.status); return; }
      try {
        render(JSON.parse(request.responseText));
        lastOk = Date.now();
      } catch (e) {
        markStale('cannot show the status: ' + e.message);
      }
    };
    request.onerror = function () { markStale('oxcol is not answering (last update ' + (lastOk ? new Date(lastOk).toLocaleTimeString() : 'never') + ')'); };
    request.ontimeout = request.onerror;
    request.send();
  }
  poll();
  setInterval(poll, POLL_MS);
})();
