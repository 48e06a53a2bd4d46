/**
 * The demo's input, shaped like the seed incident's: a 2023 fresh-food sales
 * CSV with a Korean header (날짜=date, 카테고리=category, 제품명=product,
 * 수량=quantity, 단가=unit price, 금액=amount). Fixed seed, so every run
 * produces the same bytes and the same manifest digest.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const PRODUCTS: Record<string, [string, number][]> = {
  과일: [['사과', 1200], ['배', 2500], ['딸기', 8900], ['바나나', 3500]],
  채소: [['배추', 4200], ['양파', 1800], ['당근', 1500], ['시금치', 2300]],
  수산: [['고등어', 5900], ['오징어', 7800], ['새우', 12900]],
  정육: [['삼겹살', 15900], ['닭가슴살', 8900], ['한우 등심', 39900]],
  유제품: [['우유', 2800], ['치즈', 6500], ['요거트', 3200]],
};

/** Park–Miller generator: tiny, seedable, good enough for sample data. */
function random(seed: number): () => number {
  let state = seed % 2147483647 || 1;
  return () => (state = (state * 48271) % 2147483647) / 2147483647;
}

export function salesCsv(rows = 1000, seed = 20230101): string {
  const next = random(seed);
  const categories = Object.keys(PRODUCTS);
  const lines = ['날짜,카테고리,제품명,수량,단가,금액'];
  const start = Date.UTC(2023, 0, 1);
  for (let i = 0; i < rows; i++) {
    const day = new Date(start + Math.floor(next() * 365) * 86_400_000).toISOString().slice(0, 10);
    const category = categories[Math.floor(next() * categories.length)];
    const [product, price] = PRODUCTS[category][Math.floor(next() * PRODUCTS[category].length)];
    const quantity = 1 + Math.floor(next() * 20);
    lines.push(`${day},${category},${product},${quantity},${price},${quantity * price}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Writes the demo input folder and returns its path. */
export function writeDemoInput(dir: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'Dat-fresh-food-claude.csv'), salesCsv());
  writeFileSync(
    path.join(dir, 'README.md'),
    '# Demo input\n\n2023 fresh-food sales (1,000 rows, generated with a fixed seed), shaped like the data of the incident ferry was built to prevent.\n',
  );
  return dir;
}
