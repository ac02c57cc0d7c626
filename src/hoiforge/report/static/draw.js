"use strict";
// Shared by the viewer (app.js) and audit mode (audit.js): labelled boxes on an overlay canvas,
// line width and font scaled to the image width. A box that is not [x0, y0, x1, y1] (a received
// annotation) is skipped.
function boxPainter(ctx, w) {
  const lw = Math.max(2, Math.round(w / 300));
  ctx.lineWidth = lw;
  ctx.font = `${Math.max(12, Math.round(w / 45))}px sans-serif`;
  return (b, color, label, dashed) => {
    if (!Array.isArray(b) || b.length !== 4) return;
    ctx.strokeStyle = color;
    ctx.setLineDash(dashed ? [4 * lw, 3 * lw] : []);
    ctx.strokeRect(b[0], b[1], b[2] - b[0], b[3] - b[1]);
    if (label) {
      const tw = ctx.measureText(label).width + 6;
      const th = parseInt(ctx.font) + 4;
      ctx.fillStyle = color;
      ctx.fillRect(b[0], Math.max(0, b[1] - th), tw, th);
      ctx.fillStyle = "#000";
      ctx.fillText(label, b[0] + 3, Math.max(th - 4, b[1] - 4));
    }
  };
}

// The overlay canvas over the shown image, sized to it and cleared: [its 2D context, its width].
function freshCanvas(base, canvas, ann) {
  const w = base.naturalWidth || (ann.image && ann.image.width) || 1;
  const h = base.naturalHeight || (ann.image && ann.image.height) || 1;
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  return [ctx, w];
}
