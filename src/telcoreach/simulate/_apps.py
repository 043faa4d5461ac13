"""Mobile apps and search terms seen by deep packet inspection (DPI).

DPI classifies each user-plane session by application (from the server host
and traffic signature) and, for search engines, can read the search terms.
The catalogue below is what the simulator draws sessions from; hosts are
plausible but only illustrative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "APPS",
    "CATEGORIES",
    "EVERYDAY_SEARCHES",
    "K12_CATEGORY",
    "TUTORING_SEARCHES",
    "AppCatalogue",
]

K12_CATEGORY = "k12_education"


@dataclass(frozen=True)
class App:
    """One application: name, category, server host, relative popularity."""

    name: str
    category: str
    host: str
    popularity: float
    #: Typical downlink rate while in use, kilobytes per second.
    rate_kb_s: float


APPS: tuple[App, ...] = (
    App("作业帮", K12_CATEGORY, "www.zybang.com", 5.0, 40),
    App("猿辅导", K12_CATEGORY, "www.yuanfudao.com", 4.0, 120),
    App("学而思", K12_CATEGORY, "www.xueersi.com", 4.0, 150),
    App("小猿搜题", K12_CATEGORY, "xyst.yuanfudao.com", 3.0, 30),
    App("一起作业", K12_CATEGORY, "www.17zuoye.com", 3.0, 40),
    App("掌门1对1", K12_CATEGORY, "www.zhangmen.com", 2.0, 150),
    App("洋葱学园", K12_CATEGORY, "www.yangcong345.com", 2.0, 100),
    App("高途", K12_CATEGORY, "www.gaotu.cn", 2.0, 120),
    App("有道精品课", K12_CATEGORY, "ke.youdao.com", 2.0, 110),
    App("斑马", K12_CATEGORY, "www.zhenguanyu.com", 1.5, 90),
    App("微信", "social", "weixin.qq.com", 10.0, 20),
    App("QQ", "social", "im.qq.com", 4.0, 15),
    App("微博", "social", "weibo.com", 3.0, 60),
    App("小红书", "social", "www.xiaohongshu.com", 3.0, 80),
    App("抖音", "video", "www.douyin.com", 8.0, 300),
    App("快手", "video", "www.kuaishou.com", 5.0, 280),
    App("哔哩哔哩", "video", "www.bilibili.com", 4.0, 350),
    App("爱奇艺", "video", "www.iqiyi.com", 3.0, 400),
    App("腾讯视频", "video", "v.qq.com", 3.0, 400),
    App("王者荣耀", "games", "pvp.qq.com", 5.0, 25),
    App("和平精英", "games", "gp.qq.com", 3.0, 30),
    App("原神", "games", "ys.mihoyo.com", 2.0, 40),
    App("淘宝", "shopping", "www.taobao.com", 6.0, 90),
    App("京东", "shopping", "www.jd.com", 4.0, 80),
    App("拼多多", "shopping", "www.pinduoduo.com", 4.0, 70),
    App("今日头条", "news", "www.toutiao.com", 5.0, 60),
    App("腾讯新闻", "news", "news.qq.com", 3.0, 50),
    App("QQ音乐", "music", "y.qq.com", 4.0, 40),
    App("网易云音乐", "music", "music.163.com", 3.0, 40),
    App("高德地图", "map", "www.amap.com", 4.0, 20),
    App("百度地图", "map", "map.baidu.com", 2.0, 20),
    App("支付宝", "finance", "www.alipay.com", 6.0, 10),
    App("招商银行", "finance", "www.cmbchina.com", 2.0, 10),
    App("喜马拉雅", "audio", "www.ximalaya.com", 3.0, 30),
    App("百度", "search", "www.baidu.com", 6.0, 30),
    App("搜狗搜索", "search", "www.sogou.com", 1.5, 30),
    App("美团", "food", "www.meituan.com", 5.0, 40),
    App("饿了么", "food", "www.ele.me", 3.0, 40),
)

CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(app.category for app in APPS))

#: Searches for private tutoring: each holds 家教, 辅导, 补习 or tutoring.
TUTORING_SEARCHES: tuple[str, ...] = (
    "小学数学辅导",
    "初中英语补习",
    "一对一家教",
    "高中物理辅导班",
    "家教老师 海淀",
    "暑假补习班",
    "math tutoring",
    "english tutoring online",
    "作文辅导",
    "补习班 价格",
    "奥数 辅导",
    "上门家教",
)
#: Everyday searches; none holds a tutoring term.
EVERYDAY_SEARCHES: tuple[str, ...] = (
    "天气预报",
    "北京地铁",
    "外卖",
    "电影票",
    "手机 价格",
    "火锅 推荐",
    "周末 去哪儿",
    "快递 查询",
    "感冒 症状",
    "学区房",
    "recipe dumplings",
    "loan rates",
    "新闻",
    "股票行情",
    "儿童医院 挂号",
    "健身房",
)

#: Share of sessions per category for each persona (students, parents, other
#: adults). The k12 share applies only to people who have K12 apps.
_CATEGORY_MIX: dict[str, dict[str, float]] = {
    "student": {
        "social": 0.22,
        "video": 0.25,
        "games": 0.2,
        "shopping": 0.03,
        "news": 0.02,
        "music": 0.1,
        "map": 0.02,
        "finance": 0.01,
        "audio": 0.03,
        "search": 0.06,
        "food": 0.02,
        K12_CATEGORY: 0.08,
    },
    "parent": {
        "social": 0.24,
        "video": 0.14,
        "games": 0.03,
        "shopping": 0.15,
        "news": 0.1,
        "music": 0.04,
        "map": 0.06,
        "finance": 0.07,
        "audio": 0.04,
        "search": 0.05,
        "food": 0.06,
        K12_CATEGORY: 0.06,
    },
    "adult": {
        "social": 0.27,
        "video": 0.2,
        "games": 0.08,
        "shopping": 0.1,
        "news": 0.1,
        "music": 0.06,
        "map": 0.06,
        "finance": 0.06,
        "audio": 0.03,
        "search": 0.05,
        "food": 0.05,
        K12_CATEGORY: 0.01,
    },
}
#: Order of personas in the rows of :attr:`AppCatalogue.category_mix`.
MIX_PERSONAS: tuple[str, ...] = ("student", "parent", "adult")


class AppCatalogue:
    """The app catalogue as arrays, for vectorised sampling.

    Attributes
    ----------
    names, categories, hosts : numpy.ndarray of str
        Per app.
    category_of_app : numpy.ndarray of int
        Index into :data:`CATEGORIES` per app.
    popularity, rate_kb_s : numpy.ndarray of float
        Relative popularity and typical downlink rate per app.
    k12_apps : numpy.ndarray of int
        App indices of the K12 education apps.
    category_mix : numpy.ndarray
        ``(personas, categories)`` session shares, rows summing to 1.
    """

    def __init__(self) -> None:
        self.names = np.array([app.name for app in APPS], dtype=object)
        self.hosts = np.array([app.host for app in APPS], dtype=object)
        self.categories = np.array(CATEGORIES, dtype=object)
        self.category_of_app = np.array(
            [CATEGORIES.index(app.category) for app in APPS], dtype=np.int16
        )
        self.rate_kb_s = np.array([app.rate_kb_s for app in APPS])
        self.popularity = np.array([app.popularity for app in APPS])
        self.k12_category = CATEGORIES.index(K12_CATEGORY)
        self.search_category = CATEGORIES.index("search")
        self.k12_apps = np.flatnonzero(self.category_of_app == self.k12_category)
        self.search_apps = np.flatnonzero(self.category_of_app == self.search_category)
        mix = np.array(
            [[_CATEGORY_MIX[p][c] for c in CATEGORIES] for p in MIX_PERSONAS]
        )
        self.category_mix = mix / mix.sum(axis=1, keepdims=True)

        # Per category: its apps and the cumulative popularity to draw from.
        popularity = self.popularity
        size = max(np.bincount(self.category_of_app))
        self.apps_by_category = np.zeros((len(CATEGORIES), size), dtype=np.int16)
        self.app_cdf = np.ones((len(CATEGORIES), size))
        for category in range(len(CATEGORIES)):
            members = np.flatnonzero(self.category_of_app == category)
            self.apps_by_category[category, : len(members)] = members
            self.apps_by_category[category, len(members) :] = members[-1]
            cdf = np.cumsum(popularity[members]) / popularity[members].sum()
            self.app_cdf[category, : len(members)] = cdf

    def draw_apps(self, rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
        """Return an app per session of the given categories, by popularity."""
        u = rng.random(len(category))
        cdf = self.app_cdf[category]
        position = (cdf < u[:, None]).sum(axis=1)
        return self.apps_by_category[category, position]
